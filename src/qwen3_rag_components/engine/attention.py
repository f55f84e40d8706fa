"""Packed attention without masks and without copies of the shared prefix.

A pack is one flat token sequence ``[prefix_1, items of group 1..., prefix_2, items of group 2..., ...]``. A token's
attention has up to two parts, computed apart and merged with their log-sum-exp, as in Hydragen (Juravsky et al.,
2024) and FlashInfer's cascade attention:

- **Own part.** Every prefix, item and embedding text is a *row* that attends causally to its own tokens. Rows of
  similar length are gathered into right-padded buckets ``[N, L]``: a real query never sees a padded key, so the causal
  kernel needs no mask.
- **Prefix part.** The tokens of a group's items (contiguous in the pack) attend to the whole shared prefix: one
  unmasked product against the prefix keys and values, read where they are, never copied per item.

In the last layer only each item's last token is a query; its own part then needs a key mask ``[N, 1, 1, L]`` for
the padding of shorter rows. No structure of a pack grows with ``T**2``.

That is the CPU's plan (:class:`AttentionPlan`), built around the flash kernel SDPA runs on CPU. Elsewhere (CUDA) a
pack's attention is one FlexAttention call per layer (:class:`FlexPlan`): the same visibility rule (a token sees its
own row causally and its group's prefix, nothing else) as a block-sparse mask over the flat pack, which the compiled
kernel evaluates tile by tile; K/V heads serve their query heads in the kernel (no repeated K/V) and no score matrix
is materialised. ``attend_reference`` is the test oracle only.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

logger = logging.getLogger(__name__)

# (out, lse, prefix_out, prefix_lse) -> None: the prefix part added to the own part in place
Merge = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]

# A bucket closes when the next (longer) row exceeds its first row by this factor plus slack, which bounds the padded
# share of a bucket while keeping the number of attention calls per layer small.
BUCKET_GROWTH = 1.1
BUCKET_SLACK = 8


@dataclass(frozen=True)
class Row:
    start: int  # flat index of the row's first token
    length: int  # number of own tokens
    first_query: int = 0  # own-token index of the first query: length - 1 when only the last token is read out

    @property
    def num_queries(self) -> int:
        return self.length - self.first_query


@dataclass
class OwnBucket:
    """Rows of similar length, right-padded to ``[N, L]``, attending causally to their own tokens."""

    query_index: torch.Tensor  # [N, Lq] flat index of each query (padding repeats the row's last token)
    key_index: torch.Tensor  # [N, Lk] flat index of each own key (padding repeats the row's last token)
    output_index: torch.Tensor  # [N * Lq] flat index each query's result goes to; padding goes to the spare row T
    key_bias: torch.Tensor | None  # [N, 1, 1, Lk] fp32, 0 or -inf: only for last-token queries (else: causal)


@dataclass
class PrefixPart:
    """A group's item queries against its shared prefix."""

    prefix: slice  # flat tokens of the prefix (keys and values)
    queries: slice | torch.Tensor  # the items' tokens (a flat range), or [R] the items' last tokens


@dataclass
class AttentionPlan:
    buckets: list[OwnBucket]
    prefix_parts: list[PrefixPart]


# FlexAttention's tile: the block mask says, per tile of FLEX_BLOCK queries, which tiles of keys it visits.
FLEX_BLOCK = 128


@dataclass
class FlexPlan:
    """A pack's attention as one FlexAttention call: each query token sees the tokens of its own row up to itself and
    the whole prefix of its group. Index tensors are padded to whole tiles (queries repeat the last, keys past the
    pack belong to row -2, which no query's row or prefix row matches), so the mask never reads out of bounds."""

    queries: torch.Tensor  # [Qb * FLEX_BLOCK] flat token index of each query (every token, or each item's last)
    num_queries: int  # the real ones among them
    num_tokens: int  # T, the pack's tokens (keys)
    row_of: torch.Tensor  # [Kb * FLEX_BLOCK] int32 the row (prefix, item or text) each token belongs to
    prefix_row_of: torch.Tensor  # [Kb * FLEX_BLOCK] int32 the row of the token's group prefix; -1: none
    kv_num_blocks: torch.Tensor  # [1, 1, Qb] int32 key tiles each query tile visits
    kv_indices: torch.Tensor  # [1, 1, Qb, Kb] int32 which ones: a contiguous run from the first tile it may see


def uses_flex(device: torch.device) -> bool:
    """Whether packs on ``device`` run FlexAttention (every device but the CPU, where SDPA's flash kernel runs)."""
    return device.type != "cpu"


def tokens_of_rows(
    rows: Sequence[tuple[int, int, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per token of a pack whose rows, in flat order, are ``(length, first token it may see, its prefix's row or
    -1)``: ([T] its row, [T] the first token it may see, [T] its prefix's row)."""
    lengths, first_visible, prefix_rows = (torch.tensor(column) for column in zip(*rows, strict=True))
    row_ids = torch.arange(len(rows))
    return tuple(column.repeat_interleave(lengths) for column in (row_ids, first_visible, prefix_rows))


def build_flex_plan(
    queries: Sequence[int], row_of: torch.Tensor, first_visible: torch.Tensor, prefix_row_of: torch.Tensor
) -> FlexPlan:
    """The plan of ``queries`` (flat token indices, ascending) over a pack whose token t is in row ``row_of[t]``, sees
    nothing before ``first_visible[t]`` (its group's prefix start, or its row's start) and has its prefix in row
    ``prefix_row_of[t]`` (all three [T], from :func:`tokens_of_rows`). Built on the CPU: the worker copies it to the
    device with the pack's other inputs."""
    num_tokens, num_queries = len(row_of), len(queries)
    query_index = torch.tensor(queries, dtype=torch.int64)
    query_tiles = -(-num_queries // FLEX_BLOCK)
    key_tiles = -(-num_tokens // FLEX_BLOCK)
    padded_queries = torch.cat([query_index, query_index[-1:].expand(query_tiles * FLEX_BLOCK - num_queries)])
    tiles = padded_queries.view(query_tiles, FLEX_BLOCK)
    first = first_visible[tiles].amin(1) // FLEX_BLOCK  # [Qb] first key tile seen
    last = tiles[:, -1] // FLEX_BLOCK  # [Qb] the tile of the tile's last query: no query sees past itself
    visits = last - first + 1
    kv_indices = (first[:, None] + torch.arange(key_tiles)[None, :]).clamp_(max=key_tiles - 1)  # [Qb, Kb]
    pad = key_tiles * FLEX_BLOCK - num_tokens
    return FlexPlan(
        queries=padded_queries,
        num_queries=num_queries,
        num_tokens=num_tokens,
        row_of=F.pad(row_of, (0, pad), value=-2).to(torch.int32),
        prefix_row_of=F.pad(prefix_row_of, (0, pad), value=-1).to(torch.int32),
        kv_num_blocks=visits.to(torch.int32)[None, None],
        kv_indices=kv_indices.to(torch.int32)[None, None],
    )


def flex_plan_to(plan: FlexPlan, device: torch.device) -> FlexPlan:
    """``plan``'s tensors on ``device``: from pinned memory without blocking the host on CUDA."""
    return FlexPlan(
        queries=to_device(plan.queries, device),
        num_queries=plan.num_queries,
        num_tokens=plan.num_tokens,
        row_of=to_device(plan.row_of, device),
        prefix_row_of=to_device(plan.prefix_row_of, device),
        kv_num_blocks=to_device(plan.kv_num_blocks, device),
        kv_indices=to_device(plan.kv_indices, device),
    )


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device``. To CUDA it goes through pinned memory and ``non_blocking``: a copy from pageable
    memory would wait for the GPU's queued work, so the worker could not plan the next pack while this one runs."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def flex_pack_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    queries: torch.Tensor,
    row_of: torch.Tensor,
    prefix_row_of: torch.Tensor,
    kv_num_blocks: torch.Tensor,
    kv_indices: torch.Tensor,
) -> torch.Tensor:
    """The pack's attention in one call. q: [1, H, Q, D] (the queries of ``queries``), k, v: [1, Hkv, T, D]
    -> [1, H, Q, D]. The mask is built here, so a compiled caller traces it with the kernel (one graph for every
    pack: the index tensors are its inputs, not constants)."""

    def visible(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        token = queries[q_idx]
        own = (row_of[token] == row_of[kv_idx]) & (kv_idx <= token)
        return own | (prefix_row_of[token] == row_of[kv_idx])

    mask = BlockMask.from_kv_blocks(
        kv_num_blocks,
        kv_indices,
        BLOCK_SIZE=FLEX_BLOCK,
        mask_mod=visible,
        seq_lengths=(q.shape[2], k.shape[2]),
    )
    return flex_attention(q, k, v, block_mask=mask, scale=scale, enable_gqa=True)


@functools.cache
def flex_kernel(device_type: str) -> Callable[..., torch.Tensor]:
    """:func:`flex_pack_attention` compiled for ``device_type`` (dynamic shapes: one kernel for packs of every size).
    On the CPU (tests only: CPU packs run SDPA's flash kernel) it runs eagerly, as Inductor's CPU template for it
    fails on a second shape in torch 2.13."""
    if device_type == "cpu":
        return eager_flex
    return torch.compile(flex_pack_attention, dynamic=True, fullgraph=True)


def eager_flex(*args: object) -> torch.Tensor:
    """:func:`flex_pack_attention` uncompiled: the same mask and results, but a materialised score matrix."""
    with warnings.catch_warnings():  # "flex_attention called without torch.compile": intended here
        warnings.simplefilter("ignore", UserWarning)
        return flex_pack_attention(*args)


_flex_failed: set[str] = set()  # device types where compiling FlexAttention failed: eager from then on


def run_flex(device_type: str, *args: object) -> torch.Tensor:
    """The compiled kernel; should compiling fail (no Triton, say), the eager one from then on, with one warning."""
    if device_type not in _flex_failed:
        try:
            return flex_kernel(device_type)(*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # any failure of the compiler stack
            _flex_failed.add(device_type)
            logger.warning(
                "compiling FlexAttention failed on %s (%s: %s); attention runs uncompiled from now on, with the same "
                "results but a score matrix per layer (O(T^2) memory): lower max_tokens_per_pack if that runs out.",
                device_type,
                type(error).__name__,
                str(error).strip().splitlines()[0] if str(error).strip() else "",
            )
    return eager_flex(*args)


def flex_attention_into(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: FlexPlan, scale: float, out: torch.Tensor
) -> None:
    """:func:`packed_attention` for a :class:`FlexPlan`: the rows of ``out`` [T' + 1, H * D] at the plan's queries
    get their attention. q: [T', H, D], k, v: [T', Hkv, D] (rows past the pack's T tokens are not read)."""
    num_tokens = plan.num_tokens
    attended = run_flex(
        q.device.type,
        q.index_select(0, plan.queries).transpose(0, 1)[None],  # [1, H, Qb * FLEX_BLOCK, D]
        k[:num_tokens].transpose(0, 1)[None],  # [1, Hkv, T, D], in place
        v[:num_tokens].transpose(0, 1)[None],
        scale,
        plan.queries,
        plan.row_of,
        plan.prefix_row_of,
        plan.kv_num_blocks,
        plan.kv_indices,
    )  # [1, H, Qb * FLEX_BLOCK, D]
    real = attended[0, :, : plan.num_queries].transpose(0, 1)  # [Q, H, D]
    out.view(out.shape[0], *q.shape[1:]).index_copy_(0, plan.queries[: plan.num_queries], real)


def bucket_rows(rows: Sequence[Row], max_tokens: int) -> list[list[Row]]:
    """Rows sorted by length, split where the length grows past ``BUCKET_GROWTH`` × the bucket's first row or the
    padded bucket would exceed ``max_tokens`` queries (which bounds the attention output allocated per call)."""
    buckets: list[list[Row]] = []
    for row in sorted(rows, key=lambda r: r.length):
        if (
            not buckets
            or row.length > BUCKET_GROWTH * buckets[-1][0].length + BUCKET_SLACK
            or (len(buckets[-1]) + 1) * row.num_queries > max_tokens
        ):
            buckets.append([])
        buckets[-1].append(row)
    return buckets


def build_bucket(rows: Sequence[Row], num_tokens: int, device: torch.device) -> OwnBucket:
    start = torch.tensor([r.start for r in rows], device=device)[:, None]  # [N, 1]
    last = torch.tensor([r.length - 1 for r in rows], device=device)[:, None]
    first_query = torch.tensor([r.first_query for r in rows], device=device)[:, None]
    q_len = max(r.num_queries for r in rows)
    k_len = max(r.length for r in rows)

    q_pos = first_query + torch.arange(q_len, device=device)[None, :]  # [N, Lq] own-token index of each query
    output_index = torch.where(q_pos <= last, start + q_pos, num_tokens)
    k_pos = torch.arange(k_len, device=device)[None, :]  # [1, Lk]
    key_index = start + torch.minimum(k_pos, last)
    if q_len == 1 and k_len > 1:  # last tokens only: each sees all its own keys, none of the padding
        key_bias = torch.zeros(len(rows), 1, 1, k_len, device=device)
        key_bias.masked_fill_((k_pos > last)[:, None, None, :], float("-inf"))
    else:  # whole rows: causal, and right padding is never visible to a real query
        key_bias = None
    return OwnBucket(start + torch.minimum(q_pos, last), key_index, output_index.view(-1), key_bias)


def build_plan(
    rows: Sequence[Row], prefix_parts: Sequence[PrefixPart], num_tokens: int, device: torch.device, max_tokens: int
) -> AttentionPlan:
    buckets = [build_bucket(bucket, num_tokens, device) for bucket in bucket_rows(rows, max_tokens)]
    return AttentionPlan(buckets, list(prefix_parts))


def workspace_size(plans: Sequence[AttentionPlan | FlexPlan], num_heads: int, num_kv_heads: int, head_dim: int) -> int:
    """Elements of the scratch that holds the largest bucket's gathered queries, keys and values (none for a
    :class:`FlexPlan`, whose kernel reads the pack's own tensors)."""
    sizes = [
        b.query_index.numel() * num_heads + 2 * b.key_index.numel() * num_kv_heads
        for p in plans
        if isinstance(p, AttentionPlan)
        for b in p.buckets
    ]
    return max(sizes, default=0) * head_dim


def gather(source: torch.Tensor, index: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """``source[index]`` written into the front of ``scratch``, heads first. source: [T, H, D], index: [N, L]
    -> [N, H, L, D]."""
    rows = scratch[: index.numel() * source[0].numel()].view(index.numel(), *source.shape[1:])  # [N * L, H, D]
    torch.index_select(source, 0, index.view(-1), out=rows)
    return rows.view(*index.shape, *source.shape[1:]).transpose(1, 2)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    *,
    causal: bool = False,
    key_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention and its log-sum-exp, by the flash kernel SDPA runs on CPU. q: [N, H, Lq, D]; k, v:
    [N, Hkv, Lk, D], each KV head serving H / Hkv query heads; any strides with a unit last dim -> (out [N, H, Lq, D],
    lse [N, H, Lq] fp32)."""
    if q.device.type != "cpu":
        raise ValueError(f"the bucket plan runs on the CPU; packs on {q.device} take a FlexPlan (see uses_flex)")
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, causal, attn_mask=key_bias, scale=scale
    )


def attend_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    *,
    causal: bool = False,
    key_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attend` written out with matrix products in fp32, rounded once (as the kernels accumulate): the
    tests' oracle for both attention paths, never called by the engine."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # [N, H, Lq, Lk]
    if causal:
        scores.masked_fill_(torch.ones_like(scores[0, 0], dtype=torch.bool).triu(1), float("-inf"))
    if key_bias is not None:
        scores += key_bias
    lse = scores.logsumexp(-1)  # [N, H, Lq]
    out = torch.matmul(torch.exp(scores - lse[..., None]), v.float())
    return out.to(v.dtype), lse


def merge_states(out: torch.Tensor, lse: torch.Tensor, prefix_out: torch.Tensor, prefix_lse: torch.Tensor) -> None:
    """``out`` [n, H, D] (log-sum-exp ``lse`` [n, H]) merged in place with ``prefix_out`` (``prefix_lse``), each
    weighted by its share of the softmax mass."""
    share = torch.sigmoid(prefix_lse - lse)[..., None]  # [n, H, 1] the prefix's share
    if out.dtype == share.dtype:
        out.lerp_(prefix_out, share)
    else:  # merged in fp32, rounded once
        out.copy_(out.float().lerp_(prefix_out.float(), share))


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: AttentionPlan | FlexPlan,
    scale: float,
    out: torch.Tensor,
    lse: torch.Tensor,
    scratch: torch.Tensor,
    query_chunk: int,
    merge: Merge = merge_states,
) -> None:
    """Attention of every query of ``plan``, written into ``out`` [T' + 1, H * D], where T' is at least the plan's
    token count T (a pack's rows may be padded past its tokens; attention never reads those) and row T takes the
    buckets' padding; ``lse`` [T' + 1, H] fp32 is overwritten with the own part's log-sum-exp. q: [T', H, D],
    k/v: [T', Hkv, D], rotary applied. Buckets gather into ``scratch`` (1-D, at least :func:`workspace_size`
    elements), which a pack allocates once for all its layers; prefix parts take ``query_chunk`` queries at a time,
    which bounds the output the kernel allocates per call. ``merge`` adds a prefix part to an own part. A
    :class:`FlexPlan` runs as one FlexAttention call and needs none of the scratch."""
    if isinstance(plan, FlexPlan):
        flex_attention_into(q, k, v, plan, scale, out)
        return
    num_tokens, num_heads, head_dim = q.shape
    out3 = out.view(num_tokens + 1, num_heads, head_dim)
    for b in plan.buckets:
        qb = gather(q, b.query_index, scratch)  # [N, H, Lq, D]
        kb = gather(k, b.key_index, scratch[qb.numel() :])  # [N, Hkv, Lk, D]
        vb = gather(v, b.key_index, scratch[qb.numel() + kb.numel() :])
        ob, lse_b = attend(qb, kb, vb, scale, causal=b.key_bias is None, key_bias=b.key_bias)
        out3.index_put_((b.output_index.view(qb.shape[0], -1),), ob.transpose(1, 2))  # [N, Lq, H, D] strided, no copy
        lse.index_put_((b.output_index.view(qb.shape[0], -1),), lse_b.transpose(1, 2))
    for part in plan.prefix_parts:
        kp = k[part.prefix].transpose(0, 1)[None]  # [1, Hkv, P, D], in place
        vp = v[part.prefix].transpose(0, 1)[None]
        if isinstance(part.queries, torch.Tensor):  # last tokens only: few, gathered
            merged = out3[part.queries]
            merge_prefix(merged, lse[part.queries], q[part.queries], kp, vp, scale, merge)
            out3.index_copy_(0, part.queries, merged)
            continue
        for start in range(part.queries.start, part.queries.stop, query_chunk):
            rows = slice(start, min(start + query_chunk, part.queries.stop))
            merge_prefix(out3[rows], lse[rows], q[rows], kp, vp, scale, merge)


def merge_prefix(
    out: torch.Tensor,
    lse: torch.Tensor,
    q: torch.Tensor,
    kp: torch.Tensor,
    vp: torch.Tensor,
    scale: float,
    merge: Merge,
) -> None:
    """Add the prefix part to the own part ``out`` [n, H, D] (log-sum-exp ``lse`` [n, H]), in place.
    q: [n, H, D]; kp, vp: [1, Hkv, P, D]."""
    prefix_out, prefix_lse = attend(q.transpose(0, 1)[None], kp, vp, scale)  # [1, H, n, D], [1, H, n]
    merge(out, lse, prefix_out[0].transpose(0, 1), prefix_lse[0].t())
