"""The demo (both frameworks, and its random-checkpoint fallback) and the examples, on the tiny random checkpoints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qwen3_rag_components import Qwen3EmbedEngine, demo

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUESTIONS = ["What does the with statement do?", "How are default argument values evaluated?"]
HIT_LINE = re.compile(r"^  \d\. (-?\d+\.\d{3})  \[[\w-]+\] ", re.MULTILINE)
SCORE_LINE = re.compile(r"^(-?\d+\.\d{3})  ", re.MULTILINE)


def _check_demo_output(out: str, questions: list[str]) -> None:
    for question in questions:
        assert f"Q: {question}" in out
    scores = [float(score) for score in HIT_LINE.findall(out)]
    assert len(scores) == demo.RERANK_K * len(questions)
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert re.search(r"embedder meta: .* \d+ packs?, 40 texts, [\d,]+ tokens computed", out)
    assert out.count("reranker meta: ") == len(questions)
    assert re.search(r"reranker meta: .* 20 texts, .*docs/s", out)


def test_passages_are_60_to_200_words_with_their_topic() -> None:
    passages = demo.load_passages()
    words = [len(passage.text.split()) for passage in passages]
    assert len(passages) > 500
    assert max(words) <= demo.MAX_WORDS
    assert sum(count >= demo.MIN_WORDS for count in words) > 0.95 * len(passages)
    assert {passage.topic for passage in passages} >= {"with", "function", "comparisons"}
    assert len(demo.load_passages(40)) == 40


@pytest.mark.parametrize("framework", ["haystack", "langchain"])
def test_demo_runs_on_given_checkpoints(
    framework: str,
    reranker_paths: dict[str, Path],
    embedder_paths: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("haystack" if framework == "haystack" else "langchain_classic")
    argv = ["--framework", framework, "--embedder", str(embedder_paths["base"]), "--reranker"]
    argv += [str(reranker_paths["tied"]), "--device", "cpu", "--max-passages", "40", "--questions", *QUESTIONS]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "unavailable" not in out
    assert "RANDOM" not in out
    assert "Corpus: 40 passages" in out
    _check_demo_output(out, QUESTIONS)


def test_demo_falls_back_to_random_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("haystack")
    argv = ["--embedder", str(tmp_path / "no-such-embedder"), "--reranker", "qwen3-rag-demo-test/no-such-reranker"]
    argv += ["--local-files-only", "--random-geometry", "tiny", "--cache-dir", str(tmp_path / "cache")]
    argv += ["--device", "cpu", "--max-passages", "40", "--questions", QUESTIONS[0]]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    notices = [line for line in out.splitlines() if "unavailable" in line]
    assert len(notices) == 1
    assert out.startswith("Official models unavailable (")
    assert "no-such-embedder is not a local folder" in notices[0]
    assert "no-such-reranker is not in the Hugging Face cache" in notices[0]
    assert "Random weights: the rankings above mean nothing" in out
    assert (tmp_path / "cache" / "tiny" / "reranker" / "config.json").is_file()
    _check_demo_output(out, QUESTIONS[:1])


def test_demo_bad_arguments_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--max-passages", "0"]) == 2
    assert "--max-passages must be >= 1" in capsys.readouterr().err


def _run_example(name: str, *args: str, **env: str) -> str:
    """Run an example; the timeout only catches a hang (the Ray example took over 120 s on a loaded 2-core machine)."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False", **env}
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, env=environment, timeout=600
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_haystack_example(reranker_paths: dict[str, Path], embedder_paths: dict[str, Path]) -> None:
    pytest.importorskip("haystack")
    out = _run_example("haystack_rag.py", str(embedder_paths["base"]), str(reranker_paths["tied"]))
    assert out.startswith("How are default argument values evaluated?\n")
    assert [0.0 <= float(s) <= 1.0 for s in SCORE_LINE.findall(out)] == [True, True]


def test_langchain_example_reads_models_from_env(
    reranker_paths: dict[str, Path], embedder_paths: dict[str, Path]
) -> None:
    pytest.importorskip("langchain_classic")
    env = {"QWEN3_EMBEDDER": str(embedder_paths["causal_lm"]), "QWEN3_RERANKER": str(reranker_paths["untied"])}
    out = _run_example("langchain_rag.py", **env)
    assert out.startswith("What is the difference between is and ==?\n")
    assert [0.0 <= float(s) <= 1.0 for s in SCORE_LINE.findall(out)] == [True, True]


def test_llamaindex_example(reranker_paths: dict[str, Path], embedder_paths: dict[str, Path]) -> None:
    pytest.importorskip("llama_index.core")
    out = _run_example("llamaindex_rag.py", str(embedder_paths["causal_lm"]), str(reranker_paths["untied"]))
    assert out.startswith("How are default argument values evaluated?\n")
    scores = [float(s) for s in SCORE_LINE.findall(out)]
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)


def test_rerank_only_example(reranker_paths: dict[str, Path]) -> None:
    out = _run_example("rerank_only.py", str(reranker_paths["tied"]))
    scores = [float(s) for s in SCORE_LINE.findall(out)]
    assert len(scores) == 5
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert re.search(r"^meta: 1 pack\(s\), \d+ tokens computed \(per-pair: \d+\)", out, re.MULTILINE)


@pytest.mark.ray
def test_ray_embed_corpus_example_falls_back_to_random_and_writes_parquet(tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    import pyarrow.parquet as pq

    output, cache = tmp_path / "embedded", tmp_path / "cache"
    argv = [str(output), "--model", str(tmp_path / "no-such-embedder"), "--local-files-only", "--cache-dir", str(cache)]
    out = _run_example("ray_embed_corpus.py", *argv, "--limit", "40", "--batch-size", "16")
    assert out.startswith("Official model unavailable (")
    assert re.search(r"^Embedded 40 passages with .* 64 floats each$", out, re.MULTILINE)
    assert "Random weights: the vectors mean nothing" in out

    rows = sorted(pq.read_table(output).to_pylist(), key=lambda row: row["id"])
    passages = demo.load_passages(40)
    assert [(row["id"], row["topic"], row["text"]) for row in rows] == [
        (i, passage.topic, passage.text) for i, passage in enumerate(passages)
    ]
    engine = Qwen3EmbedEngine.from_pretrained(str(cache / "tiny" / "embedder"), device="cpu")
    expected = engine.encode([passage.text for passage in passages]).embeddings
    # Batches of 16 against one call of 40: other packs, so the documented pack-layout bound.
    assert np.abs(np.array([row["embedding"] for row in rows], dtype=np.float32) - expected).max() <= 1e-5
