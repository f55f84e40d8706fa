"""A layer's per-token steps, each one pass over its tensors: compiled by ``torch.compile`` in bf16 and fp16.

ATen runs every elementwise op as a pass of its own over memory, and in bf16 each one converts to fp32 and back. On a
CPU with AMX (bf16 matrix products ~6x the fp32 rate) those passes took longer than the layer's matrix products.
Compiled, a step reads its inputs once, computes in fp32 and rounds once, at its output.

fp32 keeps the eager steps of :mod:`.forward`, Qwen3's own arithmetic with every intermediate rounded as transformers
rounds it: the exact path, within 1e-5 of the official code. Reduced precision leaves that bound anyway (bf16 scores
move by 2e-2 to 5e-2 from the official fp32 ones on random 28-layer weights), and there one rounding instead of
several kept the scores as close or closer (docs/fidelity.md).

The steps compile once per process, dtype and device type, with the token dimension dynamic, so packs of every size
share them; Inductor keeps the generated code on disk (``TORCHINDUCTOR_CACHE_DIR``), so later processes compile in a
fraction of the first one's time. ``$QWEN3_RAG_COMPILE=0`` keeps the eager steps in every dtype; where compiling fails
(no C++ compiler, no Triton on a GPU) they are kept with one warning.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

COMPILE_VARIABLE = "QWEN3_RAG_COMPILE"  # "0" keeps the eager steps in every dtype


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3RMSNorm over the last dim, in fp32 throughout. x: [..., C] -> fp32 [..., C]."""
    values = x.float()
    return weight.float() * (values * torch.rsqrt(values.square().mean(-1, keepdim=True) + eps))


def norm_(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor) -> None:
    """``out`` = RMSNorm(x). x, out: [N, C]."""
    out.copy_(_rms(x, weight, eps))


def add_norm_(x: torch.Tensor, added: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x`` += ``added``, rounded to x's dtype (the residual stream is stored in it, as in Qwen3); returns RMSNorm of
    the sum before that rounding, as its one rounding. The result is a new tensor: Inductor (torch 2.13) fails to
    generate one CPU kernel that writes two given tensors (KeyError in its outer-loop fusion).
    x, added: [N, C] -> [N, C]."""
    total = x.float() + added.float()
    x.copy_(total)
    return _rms(total, weight, eps).to(x.dtype)


def norm_rope_(
    x: torch.Tensor, weight: torch.Tensor, eps: float, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor
) -> None:
    """``out`` = rotary(RMSNorm(x)): the per-head q/k norm and the rotary embedding. x, out: [N, H, D];
    cos, sin: [N, D]."""
    normed = _rms(x, weight, eps)
    half = normed.shape[-1] // 2
    rotated = torch.cat((-normed[..., half:], normed[..., :half]), dim=-1)  # rotate_half
    out.copy_(normed * cos[:, None].float() + rotated * sin[:, None].float())


def swiglu_(gate: torch.Tensor, up: torch.Tensor) -> None:
    """``gate`` = silu(gate) * up, Qwen3's MLP activation. gate, up: [N, I]."""
    gate.copy_(F.silu(gate.float()) * up.float())


def merge_(out: torch.Tensor, lse: torch.Tensor, prefix_out: torch.Tensor, prefix_lse: torch.Tensor) -> None:
    """Add the prefix part of attention to the own part ``out``, weighting each by its share of the softmax mass.
    out, prefix_out: [n, H, D]; lse, prefix_lse: [n, H] fp32."""
    share = torch.sigmoid(prefix_lse - lse)[..., None]
    out.copy_(out.float().lerp(prefix_out.float(), share))


class FusedSteps:
    """The compiled steps. Every tensor argument but the weights has a dynamic first (token) dimension."""

    def __init__(self) -> None:
        self._norm = torch.compile(norm_, dynamic=False, fullgraph=True)
        self._add_norm = torch.compile(add_norm_, dynamic=False, fullgraph=True)
        self._norm_rope = torch.compile(norm_rope_, dynamic=False, fullgraph=True)
        self._swiglu = torch.compile(swiglu_, dynamic=False, fullgraph=True)
        self._merge = torch.compile(merge_, dynamic=False, fullgraph=True)

    def norm(self, norm: torch.nn.Module, x: torch.Tensor, out: torch.Tensor) -> None:
        self._norm(*_token_dynamic(x), norm.weight, norm.variance_epsilon, *_token_dynamic(out))

    def add_norm(self, norm: torch.nn.Module, x: torch.Tensor, added: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Returns its own tensor, not ``out``: see :func:`add_norm_`."""
        return self._add_norm(*_token_dynamic(x, added), norm.weight, norm.variance_epsilon)

    def norm_rope(
        self, norm: torch.nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor
    ) -> None:
        self._norm_rope(*_token_dynamic(x), norm.weight, norm.variance_epsilon, *_token_dynamic(cos, sin, out))

    def swiglu(self, gate: torch.Tensor, up: torch.Tensor) -> None:
        self._swiglu(*_token_dynamic(gate, up))

    def merge(self, out: torch.Tensor, lse: torch.Tensor, prefix_out: torch.Tensor, prefix_lse: torch.Tensor) -> None:
        self._merge(*_token_dynamic(out, lse, prefix_out, prefix_lse))


def _token_dynamic(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    for tensor in tensors:
        torch._dynamo.maybe_mark_dynamic(tensor, 0)
    return tensors


_lock = threading.RLock()  # compile_once holds it while its pack asks fused_steps for the steps
_steps: dict[tuple[torch.dtype, str], FusedSteps | None] = {}  # None: compiling failed there
_compiled: set[tuple[torch.dtype, str]] = set()


def fused_steps(model: torch.nn.Module) -> FusedSteps | None:
    """The compiled steps for ``model``'s dtype and device type; None where the eager steps run: fp32,
    ``$QWEN3_RAG_COMPILE=0``, or compiling failed there (see :func:`compile_once`)."""
    weight = model.embed_tokens.weight
    if weight.dtype == torch.float32 or os.environ.get(COMPILE_VARIABLE, "1") == "0":
        return None
    key = (weight.dtype, weight.device.type)
    with _lock:
        if key not in _steps:
            try:
                _steps[key] = FusedSteps()
            except Exception as error:  # torch.compile refuses this Python or platform: run eagerly
                _give_up(key, error)
        return _steps[key]


def compile_once(model: torch.nn.Module, run_pack: Callable[[], object]) -> None:
    """Compile ``model``'s steps now, the first time its dtype and device type are seen, by running ``run_pack`` (a
    tiny pack through them), and log the time it took. Should compiling fail, the eager steps run from then on, with
    one warning."""
    weight = model.embed_tokens.weight
    key = (weight.dtype, weight.device.type)
    with _lock:
        if fused_steps(model) is None or key in _compiled:
            return
        _compiled.add(key)
        start = time.perf_counter()
        try:
            run_pack()
        except Exception as error:  # any failure of the compiler stack means: run eagerly
            _give_up(key, error)
            return
    logger.info(
        "compiled the per-token steps for %s in %.1f s (once per process; %s=0 runs them eagerly)",
        _where(key),
        time.perf_counter() - start,
        COMPILE_VARIABLE,
    )


def _give_up(key: tuple[torch.dtype, str], error: Exception) -> None:
    _steps[key] = None
    logger.warning(
        "torch.compile of the per-token steps failed for %s (%s: %s); running them eagerly, which is slower but "
        "gives the same results. Set %s=0 to skip the attempt.",
        _where(key),
        type(error).__name__,
        _first_line(error),
        COMPILE_VARIABLE,
    )


def _where(key: tuple[torch.dtype, str]) -> str:
    return f"{str(key[0]).removeprefix('torch.')} on {key[1]}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
