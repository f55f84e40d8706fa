"""Reading texts (lines or JSONL, a file or stdin), writing JSON lines, and the one-line errors and reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import RunMeta

PROG = "qwen3-rag"
PROGRESS_MIN_TEXTS = 64  # a progress bar (stderr, TTY only) for inputs longer than this


class CliError(Exception):
    """A user error: printed as one ``qwen3-rag: error: ...`` line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def read_texts(file: str, input_format: str | None) -> list[str]:
    """Texts from ``file`` ("-": stdin): one per non-blank line, or JSONL (``*.jsonl`` or ``--format jsonl``)."""
    source = "<stdin>" if file == "-" else file
    if file == "-" and sys.stdin.isatty():
        print(f"{PROG}: reading texts from stdin, one per line; end with Ctrl-D", file=sys.stderr)
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {source}: {error.strerror or error}") from error
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CliError(f"{source} is not UTF-8 text (invalid byte at offset {error.start})") from error
    jsonl = input_format == "jsonl" if input_format else file.lower().endswith(".jsonl")
    texts = parse_jsonl(content, source) if jsonl else parse_lines(content)
    if not texts:
        raise CliError(f"no input texts in {source} (blank lines are skipped); give one text per line")
    return texts


def parse_lines(content: str) -> list[str]:
    # split on "\n" only: str.splitlines() would also cut texts at \x0c, \x1c, \u2028, ...
    lines = (line.removesuffix("\r") for line in content.split("\n"))
    return [line for line in lines if line.strip()]


def parse_jsonl(content: str, source: str) -> list[str]:
    texts = []
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise CliError(f"{source} line {number}: invalid JSON ({error.msg} at column {error.colno})") from error
        if isinstance(value, dict):
            value = value.get("text")
        if not isinstance(value, str):
            raise CliError(f'{source} line {number}: expected a JSON string or an object with a "text" string field')
        texts.append(value)
    return texts


def write_jsonl(records: Iterable[dict[str, Any]]) -> None:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")  # JSON lines are UTF-8 whatever the locale
    for record in records:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def float32_values(row: np.ndarray) -> list[float]:
    """The shortest decimals that read back as the same float32 values (half the size of float64 reprs)."""
    return [float(str(value)) for value in row]


def show_progress(texts: list[str]) -> bool:
    """A progress bar (stderr) only for more than PROGRESS_MIN_TEXTS texts, and only when stderr is a terminal."""
    return len(texts) > PROGRESS_MIN_TEXTS and sys.stderr.isatty()


def report(meta: RunMeta, load_ms: float) -> None:
    fields = {**meta.to_dict(), "load_ms": load_ms}
    text = " ".join(
        f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}" for key, value in fields.items()
    )
    print(f"{PROG}: {text}", file=sys.stderr)
