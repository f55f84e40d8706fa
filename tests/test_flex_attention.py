"""The CUDA attention path (one FlexAttention call per layer over a block-sparse pack mask), run on the CPU.

CPU packs run SDPA's flash kernel over buckets; every other device runs :class:`FlexPlan`. The same functions run here:
eagerly (the same mask and tiles, a materialised score matrix) and, once, compiled. Both are checked against
``attend_reference`` with the visibility rule written out densely, and the whole engine on the flex path against the
official per-pair code, with the oracle and the CPU kernel made to raise if anything calls them.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qwen3_rag_components.engine.attention as attention
import qwen3_rag_components.engine.forward as forward_module
from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine
from qwen3_rag_components.engine.attention import FLEX_BLOCK, attend_reference, eager_flex, flex_pack_attention
from qwen3_rag_components.engine.forward import build_pack_inputs
from qwen3_rag_components.testing.oracle import official_embeddings, official_rerank_scores

from .texts import BOUNDARY_DOCUMENTS, random_documents

HEADS, KV_HEADS, HEAD_DIM = 4, 2, 16
SCALE = HEAD_DIM**-0.5
QUERY = "What is the capital of China?"


def dense_visibility(segments) -> torch.Tensor:
    """[T, T] bool, the rule written out token by token: a prefix token sees its prefix causally; an item token sees
    its group's whole prefix and its own item causally; nothing sees another item or another group."""
    spans: list[tuple[int, int, slice | None]] = []  # (start, stop, the group's prefix tokens) per row
    start = 0
    for prefix, items in segments:
        prefix_tokens = slice(start, start + len(prefix)) if prefix else None
        if prefix:
            spans.append((start, start + len(prefix), None))
            start += len(prefix)
        for item in items:
            spans.append((start, start + len(item), prefix_tokens))
            start += len(item)
    visible = torch.zeros(start, start, dtype=torch.bool)
    for row_start, row_stop, prefix_tokens in spans:
        for t in range(row_start, row_stop):
            visible[t, row_start : t + 1] = True
            if prefix_tokens is not None:
                visible[t, prefix_tokens] = True
    return visible


def reference_attention(q, k, v, visible):
    """q: [T, H, D], k/v: [T, Hkv, D], visible [Q, T] for the queries q holds -> [Q, H, D], by the test oracle."""
    bias = torch.zeros(visible.shape).masked_fill_(~visible, float("-inf"))[None, None]  # [1, 1, Q, T]
    out, _ = attend_reference(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], SCALE, key_bias=bias
    )
    return out[0].transpose(0, 1)


def run_plan(plan, q, k, v):
    out = torch.full((q.shape[0] + 1, HEADS * HEAD_DIM), float("nan"), dtype=q.dtype)
    attention.flex_attention_into(q, k, v, plan, SCALE, out)
    return out.view(-1, HEADS, HEAD_DIM)


segment_lists = st.lists(
    st.tuples(
        st.integers(0, 150),  # prefix length (0: embedding texts, no prefix)
        st.lists(st.integers(1, 160), min_size=1, max_size=5),  # item lengths
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=30, deadline=None)
@given(shape=segment_lists, seed=st.integers(0, 2**16))
def test_the_flex_plan_equals_the_dense_rule(shape, seed):
    """Packs of up to 3,800 tokens (many tiles, tiles that cut rows and groups): every token's attention and every
    readout's equal the oracle's with the dense mask, fp32 within 1e-5."""
    segments = [(list(range(1, p + 1)), [list(range(1, n + 1)) for n in items]) for p, items in shape]
    inputs = build_flex_inputs(segments)
    generator = torch.Generator().manual_seed(seed)
    num_tokens = len(inputs.token_ids)
    q = torch.randn(num_tokens, HEADS, HEAD_DIM, generator=generator)
    k = torch.randn(num_tokens, KV_HEADS, HEAD_DIM, generator=generator)
    v = torch.randn(num_tokens, KV_HEADS, HEAD_DIM, generator=generator)
    visible = dense_visibility(segments)
    assert (run_plan(inputs.plan, q, k, v)[:num_tokens] - reference_attention(q, k, v, visible)).abs().max() <= 1e-5
    readout = inputs.readout
    got = run_plan(inputs.readout_plan, q, k, v)[readout]
    expected = reference_attention(q, k, v, visible)[readout]
    assert (got - expected).abs().max() <= 1e-5


def build_flex_inputs(segments):
    """:func:`build_pack_inputs` as a CUDA device gets it (FlexPlans), on the CPU."""
    real = forward_module.uses_flex
    forward_module.uses_flex = lambda device: True
    try:
        return build_pack_inputs(segments, torch.device("cpu"))
    finally:
        forward_module.uses_flex = real


def test_tiles_visit_only_a_contiguous_run_ending_at_the_query_tile():
    """A query tile visits the key tiles from the first one any of its queries may see up to its own: a query deep in
    a long document of a later group skips the earlier groups' tiles."""
    segments = [([1] * 200, [[2] * 300]), ([3] * 10, [[4] * 500])]  # second group starts at token 500
    plan = build_flex_inputs(segments).plan
    num_blocks = plan.kv_num_blocks[0, 0].tolist()
    first = plan.kv_indices[0, 0, :, 0].tolist()
    assert (first[0], num_blocks[0]) == (0, 1)
    tile = 900 // FLEX_BLOCK  # queries 896..1023: all in the second group's item, which starts seeing at token 500
    assert (first[tile], num_blocks[tile]) == (500 // FLEX_BLOCK, tile - 500 // FLEX_BLOCK + 1)


def test_bf16_flex_attention_is_within_its_rounding():
    segments = [([1] * 40, [[2] * 70, [3] * 5, [4] * 130]), ((), [[5] * 33])]
    visible = dense_visibility(segments)
    plan = build_flex_inputs(segments).plan
    generator = torch.Generator().manual_seed(0)
    num_tokens = visible.shape[0]
    q, k, v = (torch.randn(num_tokens, h, HEAD_DIM, generator=generator) for h in (HEADS, KV_HEADS, KV_HEADS))
    exact = reference_attention(q, k, v, visible)
    got = run_plan(plan, q.bfloat16(), k.bfloat16(), v.bfloat16())[:num_tokens].float()
    # Inputs rounded to bf16 (relative 2**-9 each), then the output rounded once: a few bf16 units of |out| <= ~1.
    assert (got - exact).abs().max() <= 8 * 2**-9


def test_the_compiled_kernel_traces_the_mask_and_agrees():
    """The CUDA path compiles flex_pack_attention with fullgraph=True, the mask built inside the graph. Inductor's
    CPU template compiles it too (one static shape here), with the results of the eager function."""
    segments = [([1] * 30, [[2] * 100, [3] * 9]), ((), [[4] * 150])]
    plan = build_flex_inputs(segments).plan
    generator = torch.Generator().manual_seed(1)
    num_tokens = plan.num_tokens
    q = torch.randn(1, HEADS, plan.queries.numel(), HEAD_DIM, generator=generator)
    k, v = (torch.randn(1, KV_HEADS, num_tokens, HEAD_DIM, generator=generator) for _ in range(2))
    args = (q, k, v, SCALE, plan.queries, plan.row_of, plan.prefix_row_of, plan.kv_num_blocks, plan.kv_indices)
    compiled = torch.compile(flex_pack_attention, dynamic=False, fullgraph=True)(*args)
    assert (compiled - eager_flex(*args)).abs().max() <= 1e-6


def test_a_failed_compile_runs_eagerly_with_one_warning(monkeypatch, caplog):
    def fails(device_type):
        def kernel(*args):
            raise RuntimeError("Cannot find a working triton installation.\nmore")

        return kernel

    monkeypatch.setattr(attention, "flex_kernel", fails)
    monkeypatch.setattr(attention, "_flex_failed", set())
    segments = [([1] * 5, [[2] * 7])]
    plan = build_flex_inputs(segments).plan
    q, k, v = torch.randn(12, HEADS, HEAD_DIM), torch.randn(12, KV_HEADS, HEAD_DIM), torch.randn(12, KV_HEADS, HEAD_DIM)
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        first, second = run_plan(plan, q, k, v), run_plan(plan, q, k, v)
    assert torch.equal(first[:12], second[:12])
    assert (first[:12] - reference_attention(q, k, v, dense_visibility(segments))).abs().max() <= 1e-5
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "Cannot find a working triton installation" in warnings[0]


@pytest.fixture
def flex_everywhere(monkeypatch):
    """The engine as it runs on CUDA: FlexPlans for every pack, and neither the oracle nor the CPU kernel callable."""
    monkeypatch.setattr(forward_module, "uses_flex", lambda device: True)

    def forbidden(*args, **kwargs):
        raise AssertionError("the flex path called a bucket-path function")

    monkeypatch.setattr(attention, "attend_reference", forbidden)
    monkeypatch.setattr(attention, "attend", forbidden)


def test_the_flex_path_scores_equal_the_official_code(reranker_path, official_reranker, flex_everywhere):
    documents = BOUNDARY_DOCUMENTS[:12] + random_documents(12, seed=11)
    expected = official_rerank_scores(*official_reranker, QUERY, documents)
    engine = Qwen3RerankEngine.from_pretrained(str(reranker_path), device="cpu", max_tokens_per_pack=400)
    result = engine.score_with_meta(QUERY, documents)
    assert result.meta.packs > 1  # several packs, several groups' prefixes
    assert max(abs(a - b) for a, b in zip(result.scores, expected, strict=True)) <= 1e-5


def test_the_flex_path_vectors_equal_the_official_code(embedder_paths, official_embedder, flex_everywhere):
    texts = BOUNDARY_DOCUMENTS[:12] + random_documents(12, seed=12)
    expected = official_embeddings(*official_embedder, texts).numpy()
    engine = Qwen3EmbedEngine.from_pretrained(str(embedder_paths["base"]), device="cpu")
    assert np.abs(engine.encode(texts).embeddings - expected).max() <= 1e-5


def test_cpu_buckets_refuse_other_devices():
    q = torch.empty(1, HEADS, 1, HEAD_DIM, device="meta")
    with pytest.raises(ValueError, match="FlexPlan"):
        attention.attend(q, q, q, SCALE)
