"""The `qwen3-rag` CLI: outputs equal the engines' on the tiny checkpoints; errors are one line, never a traceback.

Commands that load a model run as subprocesses (`python -m qwen3_rag_components.cli`, ~3 s each, so few of them);
argument and input checks that fail before any model is loaded call `main()` in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qwen3_rag_components
from qwen3_rag_components import LoadSpec, Qwen3RerankEngine, cli

from .fresh import in_fresh_process, numeric_state

QUERY = "What is the capital of China?"
INSTRUCTION = "Given a question, find the passage that answers it"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "北京是中国的首都。 café naïve",
    "The capital of China is Beijing.",
    'quotes " and \\ backslashes\tand tabs',
]


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    return subprocess.run(
        [sys.executable, "-m", "qwen3_rag_components.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=300,
        check=False,
    )


def json_lines(result: subprocess.CompletedProcess[str]) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("qwen3-rag: error: ")
    for fragment in fragments:
        assert fragment in last


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def expected(reranker_paths: dict[str, Path], embedder_paths: dict[str, Path]) -> dict[str, Any]:
    """The engines' results computed in one other fresh process, in another order than the CLI runs: both must give
    the same bits (the reproducibility docs/fidelity.md promises)."""
    untied, tied = str(reranker_paths["untied"]), str(reranker_paths["tied"])
    query_options = {"instruction": INSTRUCTION, "dimensions": 16, "normalize": False}
    results, state = in_fresh_process(
        ("embed", str(embedder_paths["base"]), "embed_queries", (DOCUMENTS,), query_options),
        ("rerank", tied, "score", (QUERY, DOCUMENTS), {"instruction": INSTRUCTION}),
        ("rerank", untied, "score", (QUERY, DOCUMENTS), {}),
        ("rerank", tied, "score", (QUERY, DOCUMENTS), {}),
        ("embed", str(embedder_paths["base"]), "embed_documents", (DOCUMENTS,), {}),
    )
    names = ["queries", "tied, instruction", "untied", "tied", "documents"]
    return {**dict(zip(names, results, strict=True)), "state": state}


def test_this_process_stays_within_the_documented_bound(reranker_paths, expected):
    """This pytest process has run many other tests: its scores may differ from a fresh process's, but by <= 1e-5."""
    engine = Qwen3RerankEngine.from_pretrained(str(reranker_paths["untied"]), device="cpu")
    scores = engine.score(QUERY, DOCUMENTS)
    assert engine.score(QUERY, DOCUMENTS) == scores  # repeated in one process: the same bits
    delta = max(abs(a - b) for a, b in zip(scores, expected["untied"], strict=True))
    here, there = numeric_state(), expected["state"]
    differences = {key: (here[key], there[key]) for key in here if here[key] != there[key]}
    assert delta <= 1e-5, f"|Δ| {delta:.1e} from a fresh process; global state here vs there: {differences}"


def test_no_earlier_test_left_global_numeric_state_behind(expected):
    """Thread counts, precision switches and math-library variables here, after many tests, are a fresh process's."""
    assert numeric_state() == expected["state"]


# --- rerank ---------------------------------------------------------------------------------------------------------


def check_ranking(records: list[dict], expected: list[float], documents: list[str], tolerance: float = 0) -> None:
    scores = [record["score"] for record in records]
    assert scores == sorted(scores, reverse=True)
    for record in records:
        assert record["text"] == documents[record["index"]]
        assert abs(record["score"] - expected[record["index"]]) <= tolerance


def test_rerank_text_file(reranker_paths, expected, tmp_path):
    path = write_lines(tmp_path / "docs.txt", [DOCUMENTS[0], "", *DOCUMENTS[1:], "   "])  # blank lines skipped
    records = json_lines(run_cli("rerank", "--query", QUERY, str(path), "--model", str(reranker_paths["untied"])))
    assert sorted(record["index"] for record in records) == list(range(len(DOCUMENTS)))
    check_ranking(records, expected["untied"], DOCUMENTS)


def test_rerank_stdin_top_k_instruction_verbose(reranker_paths, expected):
    result = run_cli(
        "rerank",
        "--query",
        QUERY,
        "--top-k",
        "2",
        "--instruction",
        INSTRUCTION,
        "--verbose",
        "--model",
        str(reranker_paths["tied"]),
        "--device",
        "cpu",
        "--max-tokens-per-pack",
        "64",
        "--local-files-only",
        stdin="\n".join(DOCUMENTS),
    )
    records = json_lines(result)
    expected = expected["tied, instruction"]
    assert [record["index"] for record in records] == sorted(range(len(DOCUMENTS)), key=lambda i: -expected[i])[:2]
    check_ranking(records, expected, DOCUMENTS, tolerance=1e-5)  # another pack budget: another layout, same bound
    meta = result.stderr.strip().splitlines()[-1]
    assert meta.startswith("qwen3-rag: documents=5 unique_documents=4 ") and "packs=" in meta and "elapsed_ms=" in meta


def test_rerank_jsonl(reranker_paths, expected, tmp_path):
    lines = [json.dumps(DOCUMENTS[0]), "", *(json.dumps({"text": doc, "id": k}) for k, doc in enumerate(DOCUMENTS[1:]))]
    path = write_lines(tmp_path / "docs.jsonl", lines)
    records = json_lines(run_cli("rerank", "--query", QUERY, str(path), "--model", str(reranker_paths["tied"])))
    check_ranking(records, expected["tied"], DOCUMENTS)


# --- embed ----------------------------------------------------------------------------------------------------------


def test_embed_jsonl_to_stdout(embedder_paths, expected, tmp_path):
    path = write_lines(tmp_path / "texts.jsonl", [json.dumps({"text": doc}) for doc in DOCUMENTS])
    records = json_lines(run_cli("embed", str(path), "--model", str(embedder_paths["base"])))
    assert [record["index"] for record in records] == list(range(len(DOCUMENTS)))
    vectors = np.array([record["embedding"] for record in records], dtype=np.float32)
    np.testing.assert_array_equal(vectors, np.array(expected["documents"], dtype=np.float32))


def test_embed_queries_to_npy(embedder_paths, expected, tmp_path):
    path = write_lines(tmp_path / "queries.txt", DOCUMENTS)
    output = tmp_path / "vectors.bin"  # written as is: no ".npy" appended
    model = str(embedder_paths["causal_lm"])  # the same weights as "base", saved as a Qwen3ForCausalLM
    flags = ["--query", "--instruction", INSTRUCTION, "--dimensions", "16", "--no-normalize"]
    result = run_cli("embed", str(path), "--output", str(output), "--model", model, *flags)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    vectors = np.load(output)
    assert vectors.dtype == np.float32 and vectors.shape == (len(DOCUMENTS), 16)
    np.testing.assert_array_equal(vectors, np.array(expected["queries"], dtype=np.float32))


def test_rerank_int8(reranker_paths, tmp_path):
    path = write_lines(tmp_path / "docs.txt", DOCUMENTS)
    result = run_cli(
        "rerank", "--query", QUERY, str(path), "--model", str(reranker_paths["untied"]), "--quantization", "int8", "-v"
    )
    assert result.returncode == 0, result.stderr
    engine = Qwen3RerankEngine.from_pretrained(str(reranker_paths["untied"]), device="cpu", quantization="int8")
    check_ranking(json_lines(result), engine.score(QUERY, DOCUMENTS), DOCUMENTS)
    assert "quantization=int8" in result.stderr


def test_embed_precision_with_ranges_to_npy(embedder_paths, expected, tmp_path):
    from sentence_transformers.util.quantization import quantize_embeddings

    floats = np.array(expected["documents"], dtype=np.float32)
    ranges = np.vstack((floats.min(axis=0), floats.max(axis=0)))
    np.save(tmp_path / "ranges.npy", ranges)
    path, output = write_lines(tmp_path / "texts.txt", DOCUMENTS), tmp_path / "codes.npy"
    flags = ["--precision", "uint8", "--ranges", str(tmp_path / "ranges.npy"), "--output", str(output)]
    result = run_cli("embed", str(path), "--model", str(embedder_paths["base"]), *flags)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(output), quantize_embeddings(floats, "uint8", ranges=ranges))
    binary = json_lines(run_cli("embed", str(path), "--model", str(embedder_paths["base"]), "--precision", "binary"))
    assert [r["embedding"] for r in binary] == quantize_embeddings(floats, "binary").tolist()


# --- errors and help: subprocesses ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    result = run_cli("rerank", "--query", QUERY, str(tmp_path / "missing.txt"))
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert_one_error_line(result.stderr, "cannot read", "missing.txt")


def test_non_qwen3_model(tmp_path):
    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    result = run_cli("embed", "--model", str(model), stdin="hello\n")
    assert result.returncode == 1 and result.stdout == ""
    assert_one_error_line(result.stderr, "'bert'", "Qwen3")


def test_help_runs_as_module():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("rerank", "embed", "demo", "examples:"):
        assert command in result.stdout
    assert "bench" not in result.stdout  # the benchmarks live in the repository, not in the package


# --- errors, help and forwarding: in-process (nothing is loaded) ----------------------------------------------------


@pytest.mark.parametrize("command", ["rerank", "embed", "serve"])
def test_command_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "example:\n  qwen3-rag " + command in help_text


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (['"ok"', "", "{not json"], "line 3: invalid JSON"),
        (['"ok"', '{"title": "no text field"}'], 'line 2: expected a JSON string or an object with a "text"'),
        (["42"], "line 1: expected"),
        ([], "no input texts"),
    ],
)
def test_bad_input(lines, fragment, tmp_path, capsys):
    path = write_lines(tmp_path / "docs.jsonl", lines)
    assert cli.main(["rerank", "--query", QUERY, str(path), "--model", str(tmp_path / "never-loaded")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err, str(path), fragment)


@pytest.mark.parametrize(
    "argv",
    [
        ["rerank", "--query", QUERY, "--top-k", "0"],
        ["rerank", "docs.txt"],  # --query is required
        ["embed", "--dtype", "int8"],
        ["embed", "--max-tokens-per-pack", "many"],
        ["bench", "rerank"],  # dropped in 0.2: `make bench` in the repository
        [],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_missing_model_folder(tmp_path, capsys):
    path = write_lines(tmp_path / "docs.txt", DOCUMENTS)
    assert cli.main(["embed", str(path), "--model", str(tmp_path / "no-model")]) == 1
    assert_one_error_line(capsys.readouterr().err, "No model folder at", "no-model")


def test_serve_needs_a_model(capsys):
    assert cli.main(["serve", "--port", "0"]) == 2
    assert_one_error_line(capsys.readouterr().err, "give --reranker, --embedder (or both), or --demo")


def test_serve_loads_what_quantization_asks(monkeypatch, reranker_paths):
    import qwen3_rag_components.serve as serve

    loaded = []

    def load_models(reranker, embedder, **options):
        loaded.extend([reranker, embedder])
        raise ValueError("stop before serving")

    monkeypatch.setattr(serve, "load_models", load_models)
    model = str(reranker_paths["tied"])
    assert cli.main(["serve", "--reranker", model, "--device", "cpu", "--quantization", "int8", "--port", "0"]) == 1
    assert loaded == [LoadSpec(model, "cpu", quantization="int8"), None]
    with pytest.raises(SystemExit) as usage_error:  # argparse: the choices are named on stderr
        cli.main(["serve", "--reranker", model, "--quantization", "int4"])
    assert usage_error.value.code == 2


def test_embed_instruction_needs_query(capsys):
    assert cli.main(["embed", "--instruction", INSTRUCTION, "never-read.txt"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--query")


def test_embed_bad_ranges_file(capsys, tmp_path):
    texts = write_lines(tmp_path / "texts.txt", DOCUMENTS)
    assert cli.main(["embed", "--precision", "int8", "--ranges", str(tmp_path / "none.npy"), str(texts)]) == 2
    assert_one_error_line(capsys.readouterr().err, "cannot read --ranges", "none.npy")


def test_demo_forwards_everything(monkeypatch):
    calls = []
    demo = types.ModuleType("qwen3_rag_components.demo")
    demo.main = lambda argv=None: calls.append(argv) or 7
    monkeypatch.setitem(sys.modules, "qwen3_rag_components.demo", demo)
    monkeypatch.setattr(qwen3_rag_components, "demo", demo, raising=False)
    assert cli.main(["demo", "--framework", "langchain", "--help"]) == 7
    assert calls == [["--framework", "langchain", "--help"]]


def test_the_cli_works_from_an_installed_wheel(reranker_paths, embedder_paths, tmp_path):
    """Built as a wheel and installed (not editable) away from the checkout, every command still runs."""
    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"  # a copy: a build/ left in the checkout could hold stale modules
    shutil.copytree(root / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, project / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path, project], check=True)
    (wheel,) = tmp_path.glob("qwen3_rag_components-*.whl")
    target = tmp_path / "installed"
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)

    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}

    def qwen3_rag(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, target / "bin" / "qwen3-rag", *args]  # the console script pip wrote
        return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    where = subprocess.run(
        [sys.executable, "-c", "import qwen3_rag_components as p; print(p.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert where.stdout.startswith(str(target))
    assert "rerank" in qwen3_rag("--help").stdout
    assert "--framework" in qwen3_rag("demo", "--help").stdout
    assert "--max-body-bytes" in qwen3_rag("serve", "--help").stdout
    scores = qwen3_rag("rerank", "--query", QUERY, "--model", str(reranker_paths["tied"]), stdin="a\nb\n")
    assert scores.returncode == 0 and len(scores.stdout.splitlines()) == 2, scores.stderr
    vectors = qwen3_rag("embed", "--model", str(embedder_paths["base"]), "--dimensions", "4", stdin="a\n")
    assert vectors.returncode == 0 and len(json.loads(vectors.stdout)["embedding"]) == 4, vectors.stderr
