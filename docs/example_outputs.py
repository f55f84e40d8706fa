"""The quickstart's example outputs: each framework's example run for real, its output written into the page.

    python docs/example_outputs.py            # rewrites the output blocks of docs/quickstart.md
    python docs/example_outputs.py --check    # exit 1 where the page is not what the examples print now

The examples run on tiny random checkpoints with the real tokenizer (seed 0, fp32), written to a temporary folder, so
the page needs no download and any clone reproduces it; the scores mean nothing, the code paths are the real ones. A
block sits between ``<!-- output: examples/NAME.py -->`` and ``<!-- /output -->``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from qwen3_rag_components.testing import write_embedding_checkpoint, write_reranker_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "quickstart.md"
EXAMPLES = ("haystack_rag.py", "langchain_rag.py", "llamaindex_rag.py")
BLOCK = re.compile(r"(<!-- output: examples/(?P<name>[\w.]+) -->\n)(?P<body>.*?)(<!-- /output -->)", re.DOTALL)


def run_examples(names: tuple[str, ...] = EXAMPLES) -> dict[str, str]:
    """``{example: its stdout}`` on tiny random checkpoints, in fp32 (the exact path, the same on every CPU)."""
    with tempfile.TemporaryDirectory() as folder:
        embedder = write_embedding_checkpoint(Path(folder) / "embedder", seed=0)
        reranker = write_reranker_checkpoint(Path(folder) / "reranker", seed=0)
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False"}
        environment["QWEN3_RAG_DTYPE"] = "float32"
        outputs = {}
        for name in names:
            command = [sys.executable, str(ROOT / "examples" / name), str(embedder), str(reranker)]
            done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"examples/{name} failed:\n{done.stderr}")
            outputs[name] = done.stdout
    return outputs


def render(page: str, outputs: dict[str, str]) -> str:
    """``page`` with each output block holding its example's output as a text code block."""

    def block(match: re.Match[str]) -> str:
        return f"{match[1]}```text\n{outputs[match['name']].rstrip()}\n```\n{match[4]}"

    return BLOCK.sub(block, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    rendered = render(page, run_examples())
    if args.check:
        if rendered != page:
            print(f"{PAGE} differs from what the examples print now: run python docs/example_outputs.py")
            return 1
        return 0
    PAGE.write_text(rendered, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
