"""One forward pass of a Qwen3 base model over a pack, reusing the transformers modules' weights.

The layers run on a flat ``[T, C]`` sequence (no batch, no padding); only attention sees the pack's structure, through
the attention plan of :mod:`.attention`. Hidden states come back only at the requested readout positions.
"""

from __future__ import annotations

import ctypes
import functools
import math
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model

from .attention import (
    AttentionPlan,
    FlexPlan,
    PrefixPart,
    Row,
    build_flex_plan,
    build_plan,
    flex_plan_to,
    merge_states,
    packed_attention,
    to_device,
    tokens_of_rows,
    uses_flex,
    workspace_size,
)
from .fused import compile_once, fused_steps
from .quantize import Int8Linear, QuantizedTokens, quantization_of, quantize_tokens


@dataclass
class PackInputs:
    token_ids: torch.Tensor  # [T]
    position_ids: torch.Tensor  # [T] prefixes from 0, items continue from their prefix length
    plan: AttentionPlan | FlexPlan  # every token attends (all layers but the last)
    readout_plan: AttentionPlan | FlexPlan  # only each item's last token attends (the last layer)
    readout: torch.Tensor  # [R] flat index of each item's last token, in segment order


def build_pack_inputs(
    segments: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    device: torch.device,
    max_bucket_tokens: int = 1 << 62,
) -> PackInputs:
    """segments: ``(prefix ids, [item ids, ...])`` per group in the pack; items must be non-empty.
    ``max_bucket_tokens``: the most queries (padding included) of one attention bucket (CPU plans).
    Where :func:`~.attention.uses_flex`, the plans are :class:`~.attention.FlexPlan`: built on the host, then copied
    to the device without blocking."""
    token_ids: list[int] = []
    positions: list[int] = []
    rows: list[Row] = []
    item_rows: list[Row] = []
    prefix_parts: list[tuple[slice, slice, slice]] = []  # (prefix tokens, its items' tokens, their item rows)
    spans: list[tuple[int, int, int]] = []  # per row, flat order (FlexPlan): (length, first token seen, prefix row)
    for prefix, items in segments:
        prefix_start, prefix_row = len(token_ids), -1
        if prefix:
            prefix_row = len(spans)
            rows.append(Row(prefix_start, len(prefix)))
            spans.append((len(prefix), prefix_start, -1))
            token_ids.extend(prefix)
            positions.extend(range(len(prefix)))
        items_start, first_item = len(token_ids), len(item_rows)
        for item in items:
            item_rows.append(Row(len(token_ids), len(item)))
            spans.append((len(item), prefix_start if prefix else len(token_ids), prefix_row))
            token_ids.extend(item)
            positions.extend(range(len(prefix), len(prefix) + len(item)))
        if prefix and items:
            group_items = slice(first_item, len(item_rows))
            prefix_parts.append((slice(prefix_start, items_start), slice(items_start, len(token_ids)), group_items))
    num_tokens = len(token_ids)
    readout_list = [r.start + r.length - 1 for r in item_rows]
    readout = torch.tensor(readout_list)
    plan: AttentionPlan | FlexPlan
    readout_plan: AttentionPlan | FlexPlan
    if uses_flex(device):
        per_token = tokens_of_rows(spans)  # [T] row, first token seen, prefix row
        plan = flex_plan_to(build_flex_plan(range(num_tokens), *per_token), device)
        readout_plan = flex_plan_to(build_flex_plan(readout_list, *per_token), device)
        readout = to_device(readout, device)
    else:
        readout = readout.to(device)
        plan = build_plan(
            rows + item_rows,
            [PrefixPart(prefix, items) for prefix, items, _ in prefix_parts],
            num_tokens,
            device,
            max_bucket_tokens,
        )
        readout_plan = build_plan(
            [replace(r, first_query=r.length - 1) for r in item_rows],
            [PrefixPart(prefix, readout[group_items]) for prefix, _, group_items in prefix_parts],
            num_tokens,
            device,
            max_bucket_tokens,
        )
    return PackInputs(
        token_ids=to_device(torch.tensor(token_ids), device),
        position_ids=to_device(torch.tensor(positions), device),
        plan=plan,
        readout_plan=readout_plan,
        readout=readout,
    )


# Per-token work (norms, projections, rotary embedding, MLP) runs in chunks of tokens, into buffers allocated once per
# pack and reused by every layer and chunk. On Linux CPUs glibc maps an allocation above 32 MiB (and often smaller
# ones) fresh from the kernel and page-faults it in: allocating each layer's [T, 3072] MLP tensors anew cost as much as
# the elementwise work itself and slowed the matrix products that wrote them. A chunk's widest buffer fits this size
# (give or take one padded row count, see ``padded_rows``).
CHUNK_BYTES = 24 << 20


def chunk_tokens(model: Qwen3Model) -> int:
    """The most tokens whose widest per-token buffer (the MLP's, usually) fits ``CHUNK_BYTES``; also the most queries
    of one attention bucket, whose output the kernel allocates anew at every layer."""
    config = model.config
    widest = max(config.intermediate_size, config.hidden_size, config.num_attention_heads * config.head_dim)
    return max(1, CHUNK_BYTES // (widest * model.embed_tokens.weight.element_size()))


# oneDNN, which multiplies bf16 and fp16 matrices on CPUs, compiles a kernel for every new row count and keeps it in a
# process-wide cache of up to 1,024: on a Xeon with AMX each took 3-14 ms to build and 1-4 MB to keep. Packs of every
# size would pay that for each of a layer's five weight shapes, and a long-lived process would keep them all. So there
# the per-token work runs on padded row counts from a small set: multiples of 16 up to 64 rows (below that a product's
# time is reading its weight, whatever the rows) and of 64 above. MKL's fp32 products and GPU libraries build nothing
# per shape: there the rows are the tokens, as in the official code. oneDNN's int8 products (``quantization="int8"``)
# build one per row count too (2-3 ms each for a 0.6B MLP shape on an AVX2 EPYC), so they get the same padding.
SMALL_ROWS, ROW_MULTIPLE = 16, 64
PADDING_VALUE = 0.0  # what the padding rows hold at first (finite; they never reach a token's result)


def padded_rows(weight: torch.Tensor, rows: int, quantized: bool = False) -> int:
    """The rows the matrix products of ``rows`` tokens run on (see ``ROW_MULTIPLE``): ``rows`` itself, or in bf16 and
    fp16 on a CPU, and with int8 weights, the next of 16, 32, 48, 64, 128, 192, ..."""
    if (weight.dtype == torch.float32 and not quantized) or weight.device.type != "cpu":
        return rows
    multiple = SMALL_ROWS if rows <= ROW_MULTIPLE else ROW_MULTIPLE
    return -(-rows // multiple) * multiple


def token_chunks(model: Qwen3Model, num_rows: int) -> list[slice]:
    """Chunks of the pack's ``num_rows`` (its tokens and their padding; a padded row count itself): all of one padded
    row count, at most :func:`chunk_tokens` or the least padded row count above it, but the last, which may be
    smaller."""
    weight, quantized = model.embed_tokens.weight, quantization_of(model) is not None
    limit = chunk_tokens(model)
    step = padded_rows(weight, -(-num_rows // -(-num_rows // limit)), quantized)  # ceil(T / chunks), padded
    return [slice(start, min(start + step, num_rows)) for start in range(0, num_rows, step)]


def project(linear: torch.nn.Linear | Int8Linear, x: torch.Tensor | QuantizedTokens, out: torch.Tensor) -> torch.Tensor:
    """``linear(x)`` written into ``out``. x: [N, in] (quantized only for an int8 ``linear``), out: [N, out]."""
    if isinstance(linear, Int8Linear):
        return linear.project(x, out)
    assert isinstance(x, torch.Tensor)
    torch.mm(x, linear.weight.t(), out=out)
    return out if linear.bias is None else out.add_(linear.bias)


def rms_norm(norm: torch.nn.Module, x: torch.Tensor, out: torch.Tensor, squares: torch.Tensor) -> torch.Tensor:
    """Qwen3RMSNorm's arithmetic (statistics and scaling in fp32, the weight applied in the model dtype) written into
    ``out``, which may be ``x``. x, out: [..., C]; squares: fp32 scratch of at least ``x.numel()`` elements."""
    squares = squares.view(-1)[: x.numel()].view(x.shape)
    if x.dtype == torch.float32:
        torch.mul(x, x, out=squares)  # what x.pow(2) computes
    else:
        squares.copy_(x).mul_(squares)  # x.to(float32).pow(2)
    inverse_rms = squares.mean(-1, keepdim=True).add_(norm.variance_epsilon).rsqrt_()  # [..., 1]
    torch.mul(x, inverse_rms, out=out)  # computed in fp32, rounded once to the model dtype
    return out.mul_(norm.weight)


def rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor, products: torch.Tensor
) -> torch.Tensor:
    """Rotary embedding with transformers' Qwen3 rounding (``x * cos + rotate_half(x) * sin``, each product rounded
    to the model dtype), written into ``out`` without ``rotate_half``'s copies. x, out: [N, H, D]; cos, sin: [N, D];
    products: scratch of x's dtype and at least ``x.numel() // 2`` elements."""
    half = x.shape[-1] // 2
    cos, sin = cos[:, None], sin[:, None]
    product = products.view(-1)[: x.numel() // 2].view(*x.shape[:-1], half)  # [N, H, D / 2]
    torch.mul(x, cos, out=out)
    out[..., :half] -= torch.mul(x[..., half:], sin[..., :half], out=product)  # rotate_half's first half is -x2
    out[..., half:] += torch.mul(x[..., :half], sin[..., half:], out=product)
    return out


class EagerSteps:
    """The per-token steps with Qwen3's own arithmetic (fp32's exact path), into the pack's scratch; the same methods
    as :class:`.fused.FusedSteps`."""

    def __init__(self, squares: torch.Tensor, products: torch.Tensor) -> None:
        self.squares, self.products = squares, products

    def norm(self, norm: torch.nn.Module, x: torch.Tensor, out: torch.Tensor) -> None:
        rms_norm(norm, x, out, self.squares)

    def add_norm(self, norm: torch.nn.Module, x: torch.Tensor, added: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``x`` += ``added``, then RMSNorm(x), written into ``out`` and returned."""
        x += added
        return rms_norm(norm, x, out, self.squares)

    def norm_rope(
        self, norm: torch.nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor
    ) -> None:
        rope(rms_norm(norm, x, x, self.squares), cos, sin, out, self.products)

    def swiglu(self, gate: torch.Tensor, up: torch.Tensor) -> None:
        F.silu(gate, inplace=True).mul_(up)

    merge = staticmethod(merge_states)


class Workspace:
    """A pack's buffers, carved from one allocation that its owner keeps from pack to pack.

    The scheduler's worker keeps one while calls are queued, so consecutive packs reuse the same pages instead of
    allocating, faulting in and freeing ~40 KB per token each; and freeing one large block leaves no holes behind
    (glibc hands a block above 32 MiB back to the kernel at once, but keeps freed smaller ones in its heaps, where
    the mixed sizes of later packs fragment them and, over many packs, fault back in every free page of the heap). It
    grows to the largest pack seen and is dropped when the worker leaves, so an idle engine holds none of it.
    """

    # torch's CPU allocator aligns to 64 bytes; every view keeps that alignment, since BLAS kernels may choose their
    # code path (and so their order of summation) by it.
    ALIGN_BYTES = 64

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None  # [bytes] uint8

    def carve(self, device: torch.device, *specs: tuple[torch.dtype, tuple[int, ...]]) -> list[torch.Tensor]:
        """Uninitialised tensors on ``device``, one per ``(dtype, shape)``, that do not overlap."""
        sizes = [-(-math.prod(shape) * dtype.itemsize // self.ALIGN_BYTES) * self.ALIGN_BYTES for dtype, shape in specs]
        old = self._buffer
        if old is None or old.numel() < sum(sizes) or old.device != device:
            self._buffer = old = None  # freed before the larger one is allocated
            self._buffer = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
        buffer, views, start = self._buffer, [], 0
        for (dtype, shape), size in zip(specs, sizes, strict=True):
            views.append(buffer[start : start + math.prod(shape) * dtype.itemsize].view(dtype).view(shape))
            start += size
        return views

    def release(self) -> None:
        self._buffer = None

    @property
    def nbytes(self) -> int:
        return 0 if self._buffer is None else self._buffer.nbytes


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if platform.system() != "Linux":
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (AttributeError, OSError):
        return None


def trim_heap() -> None:
    """Hand the C heap's free pages back to the kernel (glibc's ``malloc_trim``; nothing on other platforms).

    Besides the workspace, a CPU pack allocates the attention kernel's outputs (up to one chunk of queries each, a
    few MB to tens of MB), which glibc places in its heap once it has seen blocks of that size freed. Packs of other
    shapes place them elsewhere in the heap, so over many packs every free page of the heap is faulted in and stays
    resident. Trimming after each pack keeps the resident heap at what one pack uses; it costs a few milliseconds and
    the re-faulting of those outputs, ~1 % of a pack.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@torch.inference_mode()
def packed_hidden_states(model: Qwen3Model, inputs: PackInputs, workspace: Workspace | None = None) -> torch.Tensor:
    """Final-norm hidden states at ``inputs.readout``: [R, C], a new tensor (nothing of ``workspace``, whose buffers
    the pack uses, so it may be reused at once).

    The last layer needs keys and values of every token but queries, attention output, o_proj and MLP only at the
    readout tokens: nothing else of it can reach the result, so it is not computed.
    """
    config = model.config  # hidden_act is "silu": checked when loading
    heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    weight, quantized = model.embed_tokens.weight, quantization_of(model) is not None
    num_tokens = len(inputs.token_ids)
    num_rows = padded_rows(weight, num_tokens, quantized)  # rows past the tokens: zeros at first, never read
    readout = padded_readout(inputs.readout, padded_rows(weight, len(inputs.readout), quantized))  # [R'] last layer
    chunks = token_chunks(model, num_rows)
    width = chunks[0].stop
    scratch_size = workspace_size([inputs.plan, inputs.readout_plan], heads, kv_heads, head_dim)
    workspace = Workspace() if workspace is None else workspace
    dtype, fp32 = weight.dtype, torch.float32
    # RMSNorm's fp32 squares and rope's products share the bytes of the MLP's gate: no norm or rotary runs while it
    # holds a value (from gate_proj to down_proj).
    gate_bytes = width * config.intermediate_size * dtype.itemsize
    squares_bytes = width * max(config.hidden_size, heads * head_dim) * fp32.itemsize
    products_bytes = max(len(readout), width) * heads * head_dim // 2 * dtype.itemsize
    x, q, k, v, attention_rows, attention_lse, scratch, h, added, q_chunk, k_chunk, gate_region, up = workspace.carve(
        weight.device,
        (dtype, (num_rows, config.hidden_size)),  # x: the residual stream, updated in place chunk by chunk
        (dtype, (num_rows, heads, head_dim)),
        (dtype, (num_rows, kv_heads, head_dim)),
        (dtype, (num_rows, kv_heads, head_dim)),
        (dtype, (num_rows + 1, heads * head_dim)),  # attention output; row num_tokens takes the buckets' padding
        (fp32, (num_rows + 1, heads)),  # its log-sum-exp over the own part
        (dtype, (scratch_size,)),  # every bucket's gathered queries, keys and values, in turn
        (dtype, (width, config.hidden_size)),  # normed input of the chunk
        (dtype, (width, config.hidden_size)),  # o_proj or down_proj output, added to the residual by the next norm
        (dtype, (width, heads, head_dim)),
        (dtype, (width, kv_heads, head_dim)),
        (torch.uint8, (max(gate_bytes, squares_bytes + products_bytes),)),
        (dtype, (width, config.intermediate_size)),
    )
    gate = gate_region[:gate_bytes].view(dtype).view(width, config.intermediate_size)
    squares = gate_region[:squares_bytes].view(fp32)
    products = gate_region[squares_bytes : squares_bytes + products_bytes].view(dtype)
    attended = attention_rows[:num_rows]
    torch.index_select(weight, 0, inputs.token_ids, out=x[:num_tokens])  # the embedding lookup
    # Padding rows never reach a token's result: every step but attention works row by row, and attention reads none
    # of them (it writes its buckets' padding into row num_tokens, the first of them or the spare row).
    x[num_tokens:] = PADDING_VALUE
    attended[num_tokens:] = PADDING_VALUE
    positions = F.pad(inputs.position_ids, (0, num_rows - num_tokens))
    cos, sin = model.rotary_emb(x, positions[None])  # [1, T', D] each
    cos, sin = cos[0], sin[0]

    steps = fused_steps(model) or EagerSteps(squares, products)

    *layers, last = model.layers

    def shared_input(reader: torch.nn.Module, hc: torch.Tensor) -> torch.Tensor | QuantizedTokens:
        """The input of several projections (``reader`` one of them), quantized once where they are int8."""
        return quantize_tokens(hc) if isinstance(reader, Int8Linear) else hc

    def attention_inputs(layer: torch.nn.Module, c: slice, n: int, hc: torch.Tensor) -> None:
        """Keys and values of chunk ``c``, and queries except in the last layer, from its normed input hc [n, C]."""
        attn = layer.self_attn
        hc = shared_input(attn.k_proj, hc)
        kc = project(attn.k_proj, hc, out=k_chunk[:n].view(n, -1)).view(n, kv_heads, head_dim)
        steps.norm_rope(attn.k_norm, kc, cos[c], sin[c], k[c])
        project(attn.v_proj, hc, out=v[c].view(n, -1))
        if layer is not last:
            qc = project(attn.q_proj, hc, out=q_chunk[:n].view(n, -1)).view(n, heads, head_dim)
            steps.norm_rope(attn.q_norm, qc, cos[c], sin[c], q[c])

    first = model.layers[0]
    for c in chunks:
        n = len(x[c])
        steps.norm(first.input_layernorm, x[c], h[:n])
        attention_inputs(first, c, n, h[:n])
    # Each chunk goes on into the next layer as far as attention: its MLP output joins the residual stream in the
    # next layer's input norm, one pass.
    for layer, following in zip(layers, model.layers[1:], strict=True):
        attn, mlp = layer.self_attn, layer.mlp
        packed_attention(q, k, v, inputs.plan, attn.scaling, attention_rows, attention_lse, scratch, width, steps.merge)
        for c in chunks:
            n = len(x[c])
            project(attn.o_proj, attended[c], out=added[:n])
            hc = shared_input(mlp.gate_proj, steps.add_norm(layer.post_attention_layernorm, x[c], added[:n], h[:n]))
            g = project(mlp.gate_proj, hc, out=gate[:n])
            steps.swiglu(g, project(mlp.up_proj, hc, out=up[:n]))
            project(mlp.down_proj, g, out=added[:n])
            attention_inputs(following, c, n, steps.add_norm(following.input_layernorm, x[c], added[:n], h[:n]))
    attn, r = last.self_attn, readout
    h = last.input_layernorm(x[r])  # [R, C]
    qr = attn.q_norm(attn.q_proj(h).view(len(r), heads, -1))  # [R, H, D]
    q[r] = rope(qr, cos[r], sin[r], torch.empty_like(qr), products)  # other rows: never read
    packed_attention(
        q, k, v, inputs.readout_plan, attn.scaling, attention_rows, attention_lse, scratch, width, steps.merge
    )
    x = x[r] + attn.o_proj(attended[r])  # [R, C]
    x = x + last.mlp(last.post_attention_layernorm(x))
    return model.norm(x)[: len(inputs.readout)]


def padded_readout(readout: torch.Tensor, rows: int) -> torch.Tensor:
    """``readout`` [R] followed by repeats of its last index up to ``rows``: the last layer's rows, whose padding
    computes copies of the last readout (written where it writes, with the same values) and is cut off at the end."""
    return torch.cat([readout, readout[-1:].expand(rows - len(readout))])


def compile_steps(model: Qwen3Model) -> None:
    """Where the fused steps apply (bf16, fp16), compile them now, on a tiny pack laid out as real ones are: prefixes
    with two items and with one (reranking; one readout is a size of its own to the compiler), and a row without a
    prefix (embedding). Where packs run FlexAttention (CUDA), that tiny pack also compiles its kernel, in every dtype:
    at load, not in the first caller's time."""
    segments = [([1, 2, 3], [[4, 5], [6, 7, 8, 9]]), ([1, 2, 3], [[10, 11]]), ((), [[12, 13, 14]])]
    device = model.embed_tokens.weight.device
    compile_once(model, lambda: packed_hidden_states(model, build_pack_inputs(segments, device)))
    if uses_flex(device):
        packed_hidden_states(model, build_pack_inputs(segments, device))


@dataclass
class PackedRun:
    """One call's readouts, and what computing them took (its share of packs shared with other calls)."""

    hidden: torch.Tensor  # [N, C] final-norm hidden state at each item's last token, in item order
    packs: int  # packs that held some of the call's items
    tokens_computed: int  # the call's own tokens in them: its items, and its prefixes once per pack
    compute_s: float  # wall time of those packs
    queued_s: float  # the rest of the time from submission to the last readout
    peak_memory_bytes: int | None = None  # CUDA: the device's allocation peak while they ran


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError of a failed CPU allocation."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(
        text in str(error) for text in ("out of memory", "can't allocate memory", "Cannot allocate memory")
    )
