"""docs/figures.py: the attention picture is the engine's real attention plan, and the figures and page get written.

The T×T matrix scattered from the attention plan is compared with the pattern the design asks for (`design.py`, from
the segment lengths alone): the query part attends causally to itself; each document to the whole query part of its
group and causally to itself; never to another document. So this is also a test of the engine's attention plan.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3_rag_components.engine.forward import build_pack_inputs

from .design import expected_pattern

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures.py"
RERANK_SUFFIX_IDS = [151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271]


@pytest.fixture(scope="module")
def figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_figures", FIGURES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example(figures: ModuleType):
    return figures.build_example_pack()


def test_example_pack_is_the_engines_reranker_pack(example):
    inputs = example.inputs
    prefix, items = example.segments[0]
    assert len(example.segments) == 1 and len(items) == len(example.documents)
    assert inputs.token_ids[: len(prefix)].tolist() == prefix
    assert all(item[-len(RERANK_SUFFIX_IDS) :] == RERANK_SUFFIX_IDS for item in items)
    assert [len(item) for item in items] == sorted(len(item) for item in items)  # the plan sorts by length
    assert [(s.start, s.stop) for s in example.spans] == list(
        zip(np.cumsum([0, len(prefix), *map(len, items)])[:-1], np.cumsum([len(prefix), *map(len, items)]), strict=True)
    )
    positions = [*range(len(prefix)), *(p for item in items for p in range(len(prefix), len(prefix) + len(item)))]
    assert inputs.position_ids.tolist() == positions  # positions restart after the prefix for every document
    assert inputs.readout.tolist() == [s.stop - 1 for s in example.spans[1:]]


def test_attention_picture_equals_the_design(figures, example):
    t = example.num_tokens
    matrix = figures.attention_matrix(example.inputs.plan, t)
    assert np.array_equal(matrix, expected_pattern(example.segments))
    classes = figures.classify(matrix, example.spans)
    p = len(example.segments[0][0])
    lengths = [len(item) for item in example.segments[0][1]]
    counts = np.bincount(classes.ravel(), minlength=5)
    assert counts[figures.PREFIX_SELF] == p * (p + 1) // 2
    assert counts[figures.DOC_TO_PREFIX] == p * sum(lengths)
    assert counts[figures.DOC_SELF] == sum(n * (n + 1) // 2 for n in lengths)
    assert counts[figures.LEAK] == 0


def test_readout_picture_has_only_each_documents_last_token(figures, example):
    matrix = figures.attention_matrix(example.inputs.readout_plan, example.num_tokens)
    assert np.array_equal(matrix, expected_pattern(example.segments, readout_only=True))
    assert np.flatnonzero(matrix.any(axis=1)).tolist() == example.inputs.readout.tolist()


def test_every_token_is_a_query_once_and_no_key_twice(figures, example):
    inputs, t = example.inputs, example.num_tokens
    for plan, queries in ((inputs.plan, list(range(t))), (inputs.readout_plan, inputs.readout.tolist())):
        outputs = torch.cat([b.output_index for b in plan.buckets])
        assert sorted(outputs[outputs < t].tolist()) == queries  # one bucket each; padding goes to the spare row T
        pairs = 0  # (query, key) pairs the kernels compute for real queries: a key gathered twice counts twice
        for b in plan.buckets:
            real = (b.output_index < t).view(b.query_index.shape)  # [N, Lq]
            if b.key_bias is None:  # causal over whole rows: own query a sees keys 0..a
                pairs += int((real * (torch.arange(b.query_index.shape[1]) + 1)).sum())
            else:
                pairs += int((real[:, :, None] & (b.key_bias[:, 0] == 0)).sum())
        for part in plan.prefix_parts:
            count = len(range(t)[part.queries]) if isinstance(part.queries, slice) else len(part.queries)
            pairs += count * (part.prefix.stop - part.prefix.start)
        assert pairs == figures.attention_matrix(plan, t).sum()


item_ids = st.lists(st.lists(st.integers(0, 1000), min_size=1, max_size=30), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None)
@given(
    segments=st.lists(st.tuples(st.lists(st.integers(0, 1000), max_size=20), item_ids), min_size=1, max_size=3),
    max_bucket_tokens=st.integers(1, 80),
)
def test_the_plan_of_any_pack_gives_the_design_pattern(figures, segments, max_bucket_tokens):
    """Several groups per pack, empty prefixes (the embedding case), items of 1 token, small buckets: as designed."""
    inputs = build_pack_inputs(segments, torch.device("cpu"), max_bucket_tokens)
    t = len(inputs.token_ids)
    assert np.array_equal(figures.attention_matrix(inputs.plan, t), expected_pattern(segments))
    readout = figures.attention_matrix(inputs.readout_plan, t)
    assert np.array_equal(readout, expected_pattern(segments, readout_only=True))


def test_figures_and_benchmarks_page_are_written(figures, example, tmp_path):
    pytest.importorskip("matplotlib")
    runs = figures.load_runs()
    figures.draw_pack_attention(example, tmp_path / "pack-attention.png")
    figures.draw_benchmarks(runs, tmp_path / "benchmarks.png")
    for name in ("pack-attention.png", "benchmarks.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and 20_000 < len(data) < 400_000
    page = figures.benchmarks_markdown(runs)
    assert "python bench/rerank.py --layers 28 --peers st-crossencoder ours" in page
    for table in (t for run in runs for t in run.tables):
        assert f"### {table.title}" in page
        for peer in table.peers:
            assert f"| {peer['peer']} | {table.rate(peer):.1f} |" in page


def test_the_benchmarks_page_is_what_the_results_generate(figures):
    """docs/benchmarks.md is generated: a change belongs in bench/results or docs/figures.py, never in the page."""
    page = figures.benchmarks_markdown(figures.load_runs(), figures.load_solo_runs())
    assert (figures.DOCS_DIR / "benchmarks.md").read_text(encoding="utf-8") == page


def test_a_solo_report_without_its_rate_is_refused(figures, tmp_path):
    for name in figures.SOLO_COMMANDS:
        report = (figures.RESULTS_DIR / f"{name}.txt").read_text()
        (tmp_path / f"{name}.txt").write_text(report.replace("executed FLOPs / time / matmul rate", "rate"))
    with pytest.raises(ValueError, match=r"rerank-L28-ours-fp32\.txt: 2 workloads, 2 times of ours and 0 rates"):
        figures.load_solo_runs(tmp_path)
