"""Where a model runs: the torch device and dtype, from what a user wrote (``"cuda:1"``, ``"bf16"``, ``None``)."""

from __future__ import annotations

import torch

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


def check_dtype(dtype: object) -> None:
    """Raise ``ValueError`` listing the supported names unless ``dtype`` is one of them, a torch dtype, or None."""
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype in DTYPES.values()):
        return
    if isinstance(dtype, str) and dtype in DTYPES:
        return
    raise ValueError(
        f"dtype={dtype!r} is not supported; use one of {sorted(DTYPES)}, or None for the device's default "
        "(bf16 on CUDA, fp32 on CPU)."
    )


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on CUDA (fp16 can overflow in Qwen3), fp32 on CPU (bf16 matmuls are slow without native support)."""
    check_dtype(dtype)
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype] if isinstance(dtype, str) else dtype
