"""The pack forward's pieces: prefix-shared attention equals one softmax over the design's pattern, with either
kernel; the workspace's views are aligned and disjoint, and reusing it changes no bit; small chunks change nothing;
norm and rotary embedding in workspace buffers are the transformers modules' arithmetic."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm, apply_rotary_pos_emb

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine
from qwen3_rag_components.engine import attention, fused
from qwen3_rag_components.engine import forward as forward_module
from qwen3_rag_components.engine.attention import packed_attention, workspace_size
from qwen3_rag_components.engine.forward import Workspace, build_pack_inputs, packed_hidden_states

from .design import Segments, expected_pattern
from .texts import random_documents

HEADS, KV_HEADS, HEAD_DIM, SCALE = 4, 2, 8, 0.35


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: np.ndarray) -> torch.Tensor:
    """One softmax per query over the keys ``allowed`` [T, T] lets it see, in float64. q: [T, H, D] -> [T, H, D]."""
    k = k.double().repeat_interleave(HEADS // KV_HEADS, dim=1)
    v = v.double().repeat_interleave(HEADS // KV_HEADS, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.double(), k) * SCALE
    scores = scores.masked_fill(~torch.from_numpy(allowed), float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1).nan_to_num(), v)


def run_plan(segments: Segments, max_bucket_tokens: int, readout_only: bool, seed: int) -> tuple[torch.Tensor, ...]:
    inputs = build_pack_inputs(segments, torch.device("cpu"), max_bucket_tokens)
    t = len(inputs.token_ids)
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(t, h, HEAD_DIM, generator=generator) for h in (HEADS, KV_HEADS, KV_HEADS))
    plan = inputs.readout_plan if readout_only else inputs.plan
    out = torch.full((t + 1, HEADS * HEAD_DIM), float("nan"))
    lse = torch.full((t + 1, HEADS), float("nan"))  # stale values would show
    scratch = torch.empty(workspace_size([plan], HEADS, KV_HEADS, HEAD_DIM))
    packed_attention(q, k, v, plan, SCALE, out, lse, scratch, query_chunk=max_bucket_tokens)
    queries = inputs.readout if readout_only else torch.arange(t)
    expected = dense_attention(q, k, v, expected_pattern(segments, readout_only=readout_only))
    return out[:t].view(t, HEADS, HEAD_DIM)[queries], expected[queries].float()


segments_strategy = st.lists(
    st.tuples(
        st.lists(st.integers(0, 9), max_size=12),  # prefix (empty: the embedding case)
        st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=20), min_size=1, max_size=5),  # items
    ),
    min_size=1,
    max_size=3,
)


@pytest.mark.parametrize("kernel", ["cpu", "reference"])
@settings(max_examples=30, deadline=None)
@given(segments=segments_strategy, max_bucket_tokens=st.integers(1, 60), readout_only=st.booleans())
def test_prefix_shared_attention_is_one_softmax_over_the_design_pattern(
    kernel, segments, max_bucket_tokens, readout_only
):
    """Own part (causal buckets, key mask for last tokens) merged with the prefix part by log-sum-exp equals a single
    softmax over exactly the keys the design allows, with the CPU kernel and with the written-out path of other
    devices; every query is written, none left at its NaN fill."""
    with pytest.MonkeyPatch.context() as patch:
        if kernel == "reference":
            patch.setattr(attention, "attend", attention.attend_reference)
        actual, expected = run_plan(segments, max_bucket_tokens, readout_only, seed=len(segments) + max_bucket_tokens)
    assert not actual.isnan().any()
    torch.testing.assert_close(actual, expected, atol=2e-6, rtol=2e-6)


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple), min_size=1, max_size=8),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_workspace_views_are_aligned_disjoint_and_reused(shapes, dtype):
    workspace = Workspace()
    cpu = torch.device("cpu")
    dtypes = [(dtype, torch.float32)[k % 2] for k in range(len(shapes))]  # mixed dtypes in one allocation
    views = workspace.carve(cpu, *zip(dtypes, shapes, strict=True))
    assert [tuple(view.shape) for view in views] == shapes and [view.dtype for view in views] == dtypes
    spans = sorted((view.data_ptr(), view.data_ptr() + view.nbytes) for view in views)
    assert all(start % Workspace.ALIGN_BYTES == 0 for start, _ in spans)
    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(spans))
    base, size = views[0].data_ptr(), workspace.nbytes
    assert workspace.carve(cpu, (dtype, shapes[0]))[0].data_ptr() == base and workspace.nbytes == size  # reused
    (bigger,) = workspace.carve(cpu, (dtype, (size // dtype.itemsize + 1,)))
    assert workspace.nbytes >= bigger.nbytes > size  # larger: replaced
    workspace.release()
    assert workspace.nbytes == 0


def test_a_reused_workspace_changes_no_bit(reranker_model):
    """One worker's workspace serves packs of every size in turn: each pack's hidden states equal a fresh workspace's,
    bit for bit (a stale value read anywhere would show)."""
    engine = Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu")
    documents = random_documents(12, seed=3)
    prefix = engine.text.plain_ids(["a query part"])[0]
    items = engine.text.plain_ids(documents)
    packs = [[(prefix, items)], [(prefix, items[:2])], [(prefix[:3], items[5:]), (prefix, items[:4])]]
    shared = Workspace()
    for segments in [*packs, *packs]:
        inputs = build_pack_inputs(segments, engine.device, 16)
        reused = packed_hidden_states(engine.model, inputs, shared)
        fresh = packed_hidden_states(engine.model, inputs, Workspace())
        assert torch.equal(reused, fresh)


def test_small_chunks_and_buckets_change_nothing(reranker_model, embedder_model, monkeypatch):
    """The chunk size sets the token chunks of the per-token work, the largest attention bucket and the prefix part's
    query slices; tiny chunks (many of each) give the scores and vectors of one chunk per pack."""
    documents = random_documents(24, seed=5)
    reranker = Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu")
    embedder = Qwen3EmbedEngine.from_pretrained(embedder_model, device="cpu")
    scores = reranker.score("what is a packed forward?", documents)
    vectors = embedder.encode(documents).embeddings
    width = reranker.model.config.intermediate_size * 4
    monkeypatch.setattr(forward_module, "CHUNK_BYTES", 5 * width)  # 5-token chunks, 5-query buckets
    assert forward_module.chunk_tokens(reranker.model) == 5
    # Other chunks are other row counts in every product: another layout, so the documented 1e-5 bound (on AVX-512
    # an fp32 product's bits depend on its row count; docs/fidelity.md, Reproducibility).
    assert reranker.score("what is a packed forward?", documents) == pytest.approx(scores, abs=1e-5)
    assert np.abs(embedder.encode(documents).embeddings - vectors).max() <= 1e-5


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 9),
    heads=st.integers(1, 4),
    half_dim=st.integers(1, 8),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    seed=st.integers(0, 2**16),
)
def test_norm_and_rotary_are_the_transformers_arithmetic(rows, heads, half_dim, dtype, seed):
    """RMSNorm and rotary embedding written into workspace buffers (squares and products in scratch that holds stale
    values) give the transformers Qwen3 modules' results bit for bit, in fp32 and in bf16."""
    generator = torch.Generator().manual_seed(seed)
    dim = 2 * half_dim
    x = (torch.randn(rows, heads, dim, generator=generator) * 3).to(dtype)
    norm = Qwen3RMSNorm(dim, eps=1e-6).to(dtype)
    norm.weight.data = (torch.rand(dim, generator=generator) + 0.5).to(dtype)
    squares = torch.full((x.numel() + 3,), float("nan"))  # fp32, larger than needed, stale
    products = torch.full((x.numel(),), float("nan"), dtype=dtype)
    cos, sin = (torch.rand(rows, dim, generator=generator).to(dtype) for _ in range(2))
    with torch.inference_mode():
        expected = norm(x)
        normed = forward_module.rms_norm(norm, x, torch.empty_like(x), squares)
        rotated = forward_module.rope(normed, cos, sin, torch.empty_like(x), products)
        expected_rotated, _ = apply_rotary_pos_emb(expected.transpose(0, 1), expected.transpose(0, 1), cos, sin, 0)
    assert torch.equal(normed, expected)
    assert torch.equal(rotated, expected_rotated.transpose(0, 1))
    in_place = x.clone()
    assert torch.equal(forward_module.rms_norm(norm, in_place, in_place, squares), expected)  # out may be x


BF16_CPU = torch.empty(0, dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def engines(reranker_model) -> dict[torch.dtype, Qwen3RerankEngine]:
    """The tiny reranker in fp32 and in bf16, loaded once for this module's padding tests."""
    return {
        dtype: Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu", dtype=dtype)
        for dtype in (torch.float32, torch.bfloat16)
    }


@given(rows=st.integers(1, 20_000))
def test_bf16_products_run_on_a_small_set_of_row_counts(rows):
    """On a CPU in bf16 (oneDNN builds and keeps a kernel per row count) the rows are padded by less than one step:
    16 up to 64 rows, 64 above; fp32 computes exactly its tokens."""
    padded = forward_module.padded_rows(BF16_CPU, rows)
    step = 16 if rows <= 64 else 64
    assert rows <= padded < rows + step and padded % step == 0
    assert forward_module.padded_rows(torch.empty(0), rows) == rows


def test_row_counts_up_to_a_chunk_are_67():
    limit = 4096  # the bf16 chunk of the 0.6B geometry (24 MiB / 3072 / 2 bytes)
    assert len({forward_module.padded_rows(BF16_CPU, rows) for rows in range(1, limit + 1)}) == 4 + 63


@given(
    tokens=st.integers(1, 20_000),
    chunk_bytes=st.integers(1, 1 << 26),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_chunks_cover_the_rows_with_padded_row_counts(engines, tokens, chunk_bytes, dtype):
    """Every chunk of a padded pack is itself a padded row count, so no product sees another size."""
    model = engines[dtype].model
    weight = model.embed_tokens.weight
    rows = forward_module.padded_rows(weight, tokens)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(forward_module, "CHUNK_BYTES", chunk_bytes)
        chunks = forward_module.token_chunks(model, rows)
        limit = forward_module.chunk_tokens(model)
    assert chunks[0].start == 0 and chunks[-1].stop == rows
    assert all(a.stop == b.start for a, b in pairwise(chunks))
    sizes = [c.stop - c.start for c in chunks]
    assert all(forward_module.padded_rows(weight, size) == size for size in sizes)
    assert max(sizes) == sizes[0] <= forward_module.padded_rows(weight, limit)


class MatmulRows(TorchDispatchMode):
    """The row count of every matrix product run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm):
            self.rows.add(args[-2].shape[0])
        elif func.overloadpacket is torch.ops.aten.linear:  # the last layer's modules, at the readout rows
            self.rows.add(args[0].shape[0])
        return func(*args, **(kwargs or {}))


def test_every_bf16_product_of_a_pack_runs_on_a_padded_row_count(engines, monkeypatch):
    """Packs of 1, 7 and 40 documents (the last layer's readout rows too) multiply only padded row counts."""
    monkeypatch.setenv(fused.COMPILE_VARIABLE, "0")  # the same products, without Dynamo under the dispatch mode
    engine = engines[torch.bfloat16]
    weight = engine.model.embed_tokens.weight
    prefix = engine.text.plain_ids(["which rows does a product see?"])[0]
    items = engine.text.plain_ids(random_documents(40, seed=8))
    with MatmulRows() as seen:  # a dispatch mode sees its own thread only: the pack runs here, not in a scheduler
        for count in (1, 7, 40):
            packed_hidden_states(engine.model, build_pack_inputs([(prefix, items[:count])], engine.device, 64))
    assert {1, 7, 40}.isdisjoint(seen.rows)
    assert all(forward_module.padded_rows(weight, rows) == rows for rows in seen.rows)
    assert any(rows > 64 for rows in seen.rows)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_padding_rows_never_reach_a_result(engines, monkeypatch, dtype):
    """Padding rows filled with NaN instead of zeros change no bit of a pack's hidden states (fp32: padded on purpose
    by 40 rows, which it never is by itself)."""
    engine = engines[dtype]
    if dtype == torch.float32:
        monkeypatch.setattr(forward_module, "padded_rows", lambda weight, rows, quantized=False: rows + 40)
    prefix = engine.text.plain_ids(["a query part"])[0]
    items = engine.text.plain_ids(random_documents(9, seed=4))
    inputs = build_pack_inputs([(prefix, items)], engine.device, 16)
    assert forward_module.padded_rows(engine.model.embed_tokens.weight, len(inputs.token_ids)) > len(inputs.token_ids)
    zeros = packed_hidden_states(engine.model, inputs)
    monkeypatch.setattr(forward_module, "PADDING_VALUE", float("nan"))
    nans = packed_hidden_states(engine.model, inputs)
    assert zeros.shape == (len(items), engine.model.config.hidden_size)
    assert torch.isfinite(zeros).all() and torch.equal(nans, zeros)
