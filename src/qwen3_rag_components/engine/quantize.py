"""int8 weights on CPU (``quantization="int8"``): the 7 projections of every layer but the first
(:func:`quantized_layers`) through oneDNN's int8 kernel.

Each projection keeps symmetric int8 weights with one scale per output channel (``w ≈ scale[o] * q[o, i]``, q in
±127, or ±63 where the CPU's kernel would saturate: :func:`weight_levels`), taken at
load from the normal checkpoint; its input is quantized per token as it arrives (``x ≈ s[t] * (u[t, i] - 128)``, u
uint8, ``s[t] = max|x[t]| / 127``), so one token's large values cost the others nothing. The product accumulates in
int32 and comes back as ``s[t] * scale[o] * Σ_i (u - 128) q``, in the model dtype. Norms, rotary, attention, the
embedding lookup, the reranker's yes/no rows and the embedding read-out stay in the model dtype.

Why this kernel (AMD EPYC AVX2, 2 threads, [2048, 1024] × [1024, 3072], best of 5, in one run): oneDNN
``qlinear_pointwise`` with the per-token quantization 327 GFLOP/s, fbgemm ``linear_dynamic`` 317-322 (one scale per
call, which a single outlier token spoils: 59 % mean relative error of the other rows against 3.5 %), fp32 ``mm``
166, ``torch._int_mm`` 2.8. oneDNN's int8 kernels use VNNI or AMX where the CPU has them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

Quantization = Literal["int8"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
# The projections of a Qwen3 decoder layer, as attribute paths.
PROJECTIONS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
ZERO_POINT = 128  # the uint8 activations' zero: symmetric int8 values shifted into uint8, as oneDNN wants them
LEVELS = 127  # activations in ±127: symmetric, so -128 is never used and zero is exact
TINY = torch.finfo(torch.float32).tiny  # the scale of an all-zero row (padding rows), so nothing divides by zero


def check_quantization(quantization: object) -> None:
    """``ValueError`` naming the choices unless ``quantization`` is one of them or None."""
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(
            f"quantization={quantization!r} is not supported; use one of {list(QUANTIZATIONS)} (int8 weights and "
            "activations on CPU), or None for the model's dtype."
        )


def check_quantization_device(quantization: str | None, device: torch.device) -> None:
    """int8 runs on CPUs with oneDNN; elsewhere a ``ValueError`` says what to use instead."""
    if quantization is None:
        return
    if device.type != "cpu":
        raise ValueError(
            f"quantization={quantization!r} runs on CPUs only (oneDNN int8 kernels); on device '{device}' use "
            "quantization=None, where bf16 is the default."
        )
    if not torch.backends.mkldnn.is_available():
        raise ValueError(
            f"quantization={quantization!r} needs a torch build with oneDNN (torch.backends.mkldnn), which this one "
            "lacks; use quantization=None."
        )


def int8_product(activations: torch.Tensor, packed_weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """``weight_scale[o] * Σ_i (activations[t, i] - 128) * weight[o, i]`` in fp32, the sum exact in int32.
    activations: [N, in] uint8; packed_weight: ``qlinear_prepack`` of [out, in] int8; weight_scale: [out] fp32."""
    return torch.ops.onednn.qlinear_pointwise(
        activations, 1.0, ZERO_POINT, packed_weight, weight_scale, _zero_points(len(weight_scale)),
        None, 1.0, 0, torch.float32, "none", [], "",
    )  # fmt: skip


@functools.cache
def _zero_points(size: int) -> torch.Tensor:
    """The weights' zero points (symmetric: all 0), [size] int64, allocated once per output width."""
    return torch.zeros(size, dtype=torch.long)


@functools.cache
def weight_levels() -> int:
    """The int8 weights' range, ±127 or ±63, measured on this CPU: without VNNI or AMX (AVX2 only), oneDNN adds the
    uint8 × int8 products in pairs in int16 (``vpmaddubsw``), which saturate above 32,767 (255 × 127 × 2 = 64,770
    gave 32,767). Weights in ±63 keep every pair in range (255 × 63 × 2 = 32,130); measured on random 0.6B-shaped
    weights, losing that bit of the weights moved scores less than losing it of the activations would."""
    activations = torch.full((1, 2), 255, dtype=torch.uint8)  # +127 each, after the zero point
    weight = torch.full((1, 2), 127, dtype=torch.int8)
    product = int8_product(activations, torch.ops.onednn.qlinear_prepack(weight, None), torch.ones(1))
    return 127 if product.item() == 2 * 127 * 127 else 63


@dataclass(frozen=True)
class QuantizedTokens:
    """An input quantized per token once, for every projection that reads it (q, k and v read one normed input,
    gate and up another): ``x ≈ scale * (activations - 128)``."""

    activations: torch.Tensor  # [N, in] uint8
    scale: torch.Tensor  # [N, 1] fp32: max|x[t]| / 127


def quantize_tokens(x: torch.Tensor) -> QuantizedTokens:
    """x: [N, in] in the model dtype."""
    # max|x| from amax and amin: 0.59 ms on [2048, 3072] fp32 (2 threads), where vector_norm(inf) took 10.1 ms
    largest = torch.maximum(x.amax(1, keepdim=True), x.amin(1, keepdim=True).neg_())
    scale = largest.float().clamp_min_(TINY).div_(LEVELS)  # [N, 1]
    return QuantizedTokens(torch.div(x, scale).round_().add_(ZERO_POINT).to(torch.uint8), scale)


class Int8Linear(nn.Module):
    """An ``nn.Linear`` with int8 weights (one scale per output channel) and per-token int8 activations."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()  # [out, in]
        self.in_features, self.out_features = linear.in_features, linear.out_features
        levels = weight_levels()
        self.weight_scale = weight.abs().amax(1).clamp_min(TINY).div(levels)  # [out] fp32
        quantized = torch.round(weight / self.weight_scale[:, None]).clamp_(-levels, levels).to(torch.int8)
        self.packed_weight = torch.ops.onednn.qlinear_prepack(quantized, None)  # [in, out] int8, oneDNN's layout
        self.bias = None if linear.bias is None else linear.bias.detach()

    def project(self, x: torch.Tensor | QuantizedTokens, out: torch.Tensor) -> torch.Tensor:
        """``self(x)`` written into ``out``. x: [N, in] in the model dtype, or already quantized; out: [N, out]."""
        tokens = x if isinstance(x, QuantizedTokens) else quantize_tokens(x)
        # [N, out] fp32, the weight scales applied and the token scales not yet
        products = int8_product(tokens.activations, self.packed_weight, self.weight_scale)
        if out.dtype == torch.float32:
            torch.mul(products, tokens.scale, out=out)
        else:
            out.copy_(products.mul_(tokens.scale))
        return out if self.bias is None else out.add_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in] -> [..., out]."""
        out = x.new_empty(*x.shape[:-1], self.out_features)
        return self.project(x.reshape(-1, self.in_features), out.view(-1, self.out_features)).view(out.shape)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantized_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers int8 takes (``model``: a Qwen3 base model, or a Qwen3ForCausalLM, which keeps it in
    ``.model``): every layer but the first, which stays in the model dtype (a one-layer model: its only layer).

    Why (random 0.6B-geometry checkpoints, 28 layers, emulated int8 against fp32): int8 in the first layer alone
    moved the embeddings as far as int8 everywhere else did together (cosine 0.9865 against 0.9943 for layers 1-27;
    0.9809 for all 28), and keeping it costs 5 % of the int8 speed (docs/fidelity.md). Keeping the second layer as
    well gained nothing in the reranker's ranking (Spearman 0.9921 against 0.9927)."""
    layers = list(getattr(model, "model", model).layers)
    return layers[1:] or layers


def replace_projections(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> None:
    """Replace, in place, the :data:`PROJECTIONS` of the :func:`quantized_layers` of ``model`` by
    ``make(linear)``."""
    for layer in quantized_layers(model):
        for path in PROJECTIONS:
            owner_name, name = path.split(".")
            owner = getattr(layer, owner_name)
            setattr(owner, name, make(getattr(owner, name)))


def quantize_model(model: nn.Module) -> None:
    """Make ``model`` (as for :func:`replace_projections`) run int8 projections (:class:`Int8Linear`), in place.

    The checkpoint's tensors may be views of one memory-mapped file, which stays mapped (and the pages that
    quantizing read stay resident: 2.6 GB against 1.5 GB for a 28-layer 0.6B reranker) while any view lives: the
    parameters left (embedding, norms, head) get memory of their own, so the file and the replaced weights are freed.
    """
    replace_projections(model, Int8Linear)
    for parameter in model.parameters():
        parameter.data = parameter.data.clone()


def quantization_of(model: nn.Module) -> Quantization | None:
    """What :func:`quantize_model` did to ``model`` (a Qwen3 base model): ``"int8"`` or None."""
    return "int8" if isinstance(model.layers[-1].self_attn.q_proj, Int8Linear) else None
