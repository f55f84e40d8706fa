"""Packed attention without a dense T×T mask.

A pack is one flat token sequence ``[prefix_1, items of group 1..., prefix_2, items of group 2..., ...]``. Every
prefix and every item is an attention *row*: its queries are its own tokens; its keys are its group's prefix (items
only) followed by its own tokens, causally. Rows of similar length are gathered into padded buckets, so the
attention memory of a pack grows with ``sum(row_len * (prefix_len + row_len))``, never with ``T**2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# A bucket closes when the next (longer) row exceeds its first row by this factor plus slack, which bounds the padded
# share of a bucket while keeping the number of attention calls per layer small.
BUCKET_GROWTH = 1.1
BUCKET_SLACK = 8


@dataclass(frozen=True)
class Row:
    start: int  # flat index of the row's first token
    length: int  # number of own tokens (queries)
    prefix_start: int  # flat index of the shared prefix it attends to
    prefix_length: int  # 0 for prefixes themselves and for embedding texts
    first_query: int = 0  # own-token index of the first query: length - 1 when only the last token is read out

    @property
    def num_queries(self) -> int:
        return self.length - self.first_query


@dataclass
class AttentionBucket:
    query_index: torch.Tensor  # [N, Lq] flat token index of each query (padding repeats a valid index)
    key_index: torch.Tensor  # [N, Lk] flat token index of each key
    mask: torch.Tensor  # [N, 1, Lq, Lk] bool, True = may attend
    valid: torch.Tensor  # [N, Lq] bool, real (not padded) queries
    output_index: torch.Tensor  # [sum(len)] flat index of each real query, in ``valid`` order


def bucket_rows(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows sorted by length, split where the length grows past ``BUCKET_GROWTH`` × the bucket's first row."""
    buckets: list[list[Row]] = []
    for row in sorted(rows, key=lambda r: (r.length, r.prefix_length)):
        if not buckets or row.length > BUCKET_GROWTH * buckets[-1][0].length + BUCKET_SLACK:
            buckets.append([])
        buckets[-1].append(row)
    return buckets


def build_bucket(rows: Sequence[Row], device: torch.device) -> AttentionBucket:
    start = torch.tensor([r.start for r in rows], device=device)[:, None]  # [N, 1]
    length = torch.tensor([r.length for r in rows], device=device)[:, None]
    prefix_start = torch.tensor([r.prefix_start for r in rows], device=device)[:, None]
    prefix_length = torch.tensor([r.prefix_length for r in rows], device=device)[:, None]
    first_query = torch.tensor([r.first_query for r in rows], device=device)[:, None]
    q_len = max(r.num_queries for r in rows)
    k_len = max(r.prefix_length + r.length for r in rows)

    q_pos = first_query + torch.arange(q_len, device=device)[None, :]  # [N, Lq] own-token index of each query
    valid = q_pos < length  # [N, Lq]
    query_index = start + torch.where(valid, q_pos, first_query)

    k_pos = torch.arange(k_len, device=device)[None, :]  # [1, Lk]
    own = k_pos - prefix_length  # [N, Lk] position of the key inside the row's own tokens (<0: prefix)
    in_prefix = own < 0
    key_valid = own < length
    key_index = torch.where(in_prefix, prefix_start + k_pos, start + own.clamp(min=0))
    key_index = torch.where(key_valid, key_index, start)  # padded keys point at a real token; the mask hides them

    causal = own[:, None, :] <= q_pos[:, :, None]  # [N, Lq, Lk]
    mask = (in_prefix[:, None, :] | causal) & key_valid[:, None, :]
    return AttentionBucket(query_index, key_index, mask[:, None], valid, query_index[valid])


def build_buckets(rows: Sequence[Row], device: torch.device) -> list[AttentionBucket]:
    return [build_bucket(bucket, device) for bucket in bucket_rows(rows)]


def workspace_size(buckets: Sequence[AttentionBucket], num_heads: int, num_kv_heads: int, head_dim: int) -> int:
    """Elements of the scratch that holds the largest bucket's gathered queries, keys and values."""
    return max(b.query_index.numel() * num_heads + 2 * b.key_index.numel() * num_kv_heads for b in buckets) * head_dim


def gather(source: torch.Tensor, index: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """``source[index]`` written into the front of ``scratch``, heads first. source: [T, H, D], index: [N, L]
    -> [N, H, L, D]."""
    rows = scratch[: index.numel() * source[0].numel()].view(index.numel(), *source.shape[1:])  # [N * L, H, D]
    torch.index_select(source, 0, index.view(-1), out=rows)
    return rows.view(*index.shape, *source.shape[1:]).transpose(1, 2)


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    buckets: Sequence[AttentionBucket],
    scale: float,
    out: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """q: [T, H, D], k/v: [T, Hkv, D] (rotary applied) -> [T, H * D], written into ``out`` when given. Buckets gather
    into ``scratch`` (1-D, at least :func:`workspace_size` elements), which a pack allocates once for all its layers:
    a fresh gather per layer and bucket would fault its pages in anew every time (see forward.CHUNK_BYTES)."""
    num_tokens, num_heads, head_dim = q.shape
    gqa = num_heads != k.shape[1]
    out = q.new_empty(num_tokens, num_heads, head_dim) if out is None else out.view(num_tokens, num_heads, head_dim)
    if scratch is None:
        scratch = q.new_empty(workspace_size(buckets, num_heads, k.shape[1], head_dim))
    for b in buckets:
        qb = gather(q, b.query_index, scratch)  # [N, H, Lq, D]
        kb = gather(k, b.key_index, scratch[qb.numel() :])  # [N, Hkv, Lk, D]; each KV head serves H / Hkv query heads
        vb = gather(v, b.key_index, scratch[qb.numel() + kb.numel() :])
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=b.mask, scale=scale, enable_gqa=gqa)  # [N, H, Lq, D]
        out[b.output_index] = ob.transpose(1, 2)[b.valid]
    return out.view(num_tokens, num_heads * head_dim)
