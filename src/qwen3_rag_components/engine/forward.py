"""One forward pass of a Qwen3 base model over a pack, reusing the transformers modules' weights.

The layers run on a flat ``[T, C]`` sequence (no batch, no padding); only attention sees the pack's structure, through
the buckets of :mod:`.attention`. Hidden states come back only at the requested readout positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model, rotate_half

from .attention import AttentionBucket, Row, build_buckets, packed_attention


@dataclass
class PackInputs:
    token_ids: torch.Tensor  # [T]
    position_ids: torch.Tensor  # [T] prefixes from 0, items continue from their prefix length
    buckets: list[AttentionBucket]  # every token attends (all layers but the last)
    readout_buckets: list[AttentionBucket]  # only each item's last token attends (the last layer)
    readout: torch.Tensor  # [R] flat index of each item's last token, in segment order


def build_pack_inputs(
    segments: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], device: torch.device
) -> PackInputs:
    """segments: ``(prefix ids, [item ids, ...])`` per group in the pack; items must be non-empty."""
    token_ids: list[int] = []
    positions: list[int] = []
    rows: list[Row] = []
    item_rows: list[Row] = []
    for prefix, items in segments:
        prefix_start = len(token_ids)
        if prefix:
            rows.append(Row(prefix_start, len(prefix), prefix_start, 0))
            token_ids.extend(prefix)
            positions.extend(range(len(prefix)))
        for item in items:
            item_rows.append(Row(len(token_ids), len(item), prefix_start, len(prefix)))
            token_ids.extend(item)
            positions.extend(range(len(prefix), len(prefix) + len(item)))
    return PackInputs(
        token_ids=torch.tensor(token_ids, device=device),
        position_ids=torch.tensor(positions, device=device),
        buckets=build_buckets(rows + item_rows, device),
        readout_buckets=build_buckets([replace(r, first_query=r.length - 1) for r in item_rows], device),
        readout=torch.tensor([r.start + r.length - 1 for r in item_rows], device=device),
    )


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as transformers' Qwen3 applies it. x: [T, H, D], cos/sin: [T, D]."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


@torch.inference_mode()
def packed_hidden_states(model: Qwen3Model, inputs: PackInputs) -> torch.Tensor:
    """Final-norm hidden states at ``inputs.readout``: [R, C].

    The last layer needs keys and values of every token but queries, attention output, o_proj and MLP only at the
    readout tokens: nothing else of it can reach the result, so it is not computed.
    """
    x = model.embed_tokens(inputs.token_ids)  # [T, C]
    cos, sin = model.rotary_emb(x, inputs.position_ids[None])  # [1, T, D] each
    cos, sin = cos[0], sin[0]
    last = len(model.layers) - 1
    for index, layer in enumerate(model.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        k = attn.k_norm(attn.k_proj(h).view(len(h), -1, attn.head_dim))  # [T, Hkv, D]
        v = attn.v_proj(h).view(len(h), -1, attn.head_dim)  # [T, Hkv, D]
        if index < last:
            q = attn.q_norm(attn.q_proj(h).view(len(h), -1, attn.head_dim))  # [T, H, D]
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            x = x + attn.o_proj(packed_attention(q, k, v, inputs.buckets, attn.scaling))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
            continue
        r = inputs.readout
        q_r = attn.q_norm(attn.q_proj(h[r]).view(len(r), -1, attn.head_dim))  # [R, H, D]
        q_r, k = rope(q_r, cos[r], sin[r]), rope(k, cos, sin)
        q = q_r.new_empty(len(h), *q_r.shape[1:])  # [T, H, D]: only readout rows are written and read
        q[r] = q_r
        x = x[r] + attn.o_proj(packed_attention(q, k, v, inputs.readout_buckets, attn.scaling)[r])  # [R, C]
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.norm(x)


@dataclass
class PackedRun:
    """One call's readouts, and what computing them took (its share of packs shared with other calls)."""

    hidden: torch.Tensor  # [N, C] final-norm hidden state at each item's last token, in item order
    packs: int  # packs that held some of the call's items
    tokens_computed: int  # the call's own tokens in them: its items, and its prefixes once per pack
    compute_s: float  # wall time of those packs
    queued_s: float  # the rest of the time from submission to the last readout


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError of a failed CPU allocation."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(
        text in str(error) for text in ("out of memory", "can't allocate memory", "Cannot allocate memory")
    )
