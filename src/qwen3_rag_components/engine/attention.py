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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

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


def workspace_size(plans: Sequence[AttentionPlan], num_heads: int, num_kv_heads: int, head_dim: int) -> int:
    """Elements of the scratch that holds the largest bucket's gathered queries, keys and values."""
    sizes = [
        b.query_index.numel() * num_heads + 2 * b.key_index.numel() * num_kv_heads for p in plans for b in p.buckets
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
    """Softmax attention and its log-sum-exp. q: [N, H, Lq, D]; k, v: [N, Hkv, Lk, D], each KV head serving
    H / Hkv query heads; any strides with a unit last dim -> (out [N, H, Lq, D], lse [N, H, Lq] fp32)."""
    if q.device.type == "cpu":  # the flash kernel SDPA itself runs on CPU, asked for the log-sum-exp too
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=key_bias, scale=scale
        )
    return attend_reference(q, k, v, scale, causal=causal, key_bias=key_bias)


def attend_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    *,
    causal: bool = False,
    key_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attend` written out with matrix products in fp32, rounded once (as the kernel accumulates): the path
    for devices without the CPU kernel, and its check in the tests."""
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
    plan: AttentionPlan,
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
    which bounds the output the kernel allocates per call. ``merge`` adds a prefix part to an own part."""
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
