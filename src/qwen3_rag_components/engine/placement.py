"""Where a model runs: the torch device and dtype, from what a user wrote (``"cuda:1"``, ``"bf16"``, ``None``)."""

from __future__ import annotations

import os

import torch

# Set to a dtype name, it replaces the hardware's choice wherever ``dtype=None`` (every component, the CLI, Ray workers
# and the HTTP service), e.g. QWEN3_RAG_DTYPE=float32 to keep a deployment on the exact path without editing code.
DTYPE_VARIABLE = "QWEN3_RAG_DTYPE"

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, without asking whether this machine has it (a driver may lack the workers' GPU)."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'.") from error


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = parse_device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here; use device='cpu'.")
    if resolved.type not in ("cpu", "cuda"):
        try:  # other backends (mps, xpu, ...) run the same code where this torch build supports them
            torch.empty(0, device=resolved)
        except RuntimeError as error:
            raise ValueError(f"device={device!r} is not available here ({error}); use 'cpu' or 'cuda'.") from error
    return resolved


def check_dtype(dtype: object, name: str = "dtype") -> None:
    """Raise ``ValueError`` listing the supported names unless ``dtype`` is one of them, a torch dtype, or None."""
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype in DTYPES.values()):
        return
    if isinstance(dtype, str) and dtype in DTYPES:
        return
    raise ValueError(
        f"{name}={dtype!r} is not supported; use one of {sorted(DTYPES)}, or None for the hardware's default "
        "(bf16 on CUDA and on CPUs with AMX, fp32 elsewhere)."
    )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX tiles), where oneDNN's bf16 matmul runs ~6x the
    fp32 rate. Without AMX bf16 is *slower* than fp32: 0.55x the fp32 rate with avx512_bf16, 0.09x on AVX2
    (``bench/dtype_choice.py``)."""
    return torch.cpu._is_amx_tile_supported()


def choose_dtype(dtype: str | torch.dtype | None, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype to run in, and why (for the load log line).

    ``None`` takes ``$QWEN3_RAG_DTYPE`` when set, else bf16 on CUDA (fp16 can overflow in Qwen3) and on CPUs with AMX,
    fp32 elsewhere. fp32 is the exact path (scores within 1e-5 of the official fp32 code); bf16 trades ~1e-2 for speed.
    """
    check_dtype(dtype)
    if dtype is not None:
        return (DTYPES[dtype] if isinstance(dtype, str) else dtype), "asked for"
    if variable := os.environ.get(DTYPE_VARIABLE):
        check_dtype(variable, f"${DTYPE_VARIABLE}")
        return DTYPES[variable], f"from ${DTYPE_VARIABLE}"
    if device.type == "cuda":
        return torch.bfloat16, "default on CUDA"
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16, "default on a CPU with AMX (native bf16 matmul); dtype='float32' for the exact path"
    return torch.float32, f"default on {device.type} without native bf16 matmul"


def reduced_fp32_matmul(device: torch.device) -> str | None:
    """The reduced precision ("tf32", "bf16") that torch's global settings allow for fp32 matrix products on
    ``device``'s backend (``torch.set_float32_matmul_precision("high")`` or ``"medium"``, or
    ``torch.backends.*.fp32_precision``), or None where they run in fp32 ("ieee"). Where the hardware has the reduced
    format, fp32 results then leave the 1e-5 bound."""
    backend = torch.backends.cuda if device.type == "cuda" else torch.backends.mkldnn
    precision = backend.matmul.fp32_precision  # "none" inherits, and the getter resolves it
    return None if precision in ("ieee", "none") else precision


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    return choose_dtype(dtype, device)[0]
