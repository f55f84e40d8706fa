"""Where a model runs: the torch device and dtype, from what a user wrote (``"cuda:1"``, ``"bf16"``, ``None``)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

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
        "(bf16 on CUDA and on CPUs where bf16 matrix products measure faster than fp32, fp32 elsewhere)."
    )


# bf16 becomes a CPU's default only where its matrix products beat fp32's by this factor: a clear win, not noise
# (shared machines swing by tens of per cent), and enough to pay for the elementwise work bf16 adds around them.
BF16_MARGIN = 1.3
# The probe: one product at a Qwen3-0.6B MLP shape ([rows, hidden] x [hidden, intermediate]); the larger Qwen3 models'
# products are larger, and run at least as close to the peak rate. 512 rows, not fewer: on an AVX2 EPYC, MKL's fp32
# ran at 23 GFLOP/s with 128 rows but 41-121 with 512 and 82-103 with 2,048 (a pack's chunks have thousands), so a
# smaller probe would flatter bf16 (0.39x at 128 rows, 0.15-0.25x at 512, 0.15-0.19x at 2,048).
PROBE_ROWS, PROBE_HIDDEN, PROBE_INTERMEDIATE = 512, 1024, 3072
PROBE_ROUNDS = 3
CACHE_FILE = "cpu_dtype.json"  # under $XDG_CACHE_HOME/qwen3_rag_components (~/.cache by default)


@dataclass(frozen=True)
class MatmulRates:
    """Best-of-N GFLOP/s of the probe product in fp32 and bf16 on this CPU, with this torch and thread count."""

    float32: float
    bfloat16: float

    @property
    def bf16_speedup(self) -> float:
        return self.bfloat16 / self.float32


def cpu_info() -> tuple[str, set[str]]:
    """This CPU's model name and its flags, as Linux lists them in /proc/cpuinfo (elsewhere: the platform's name,
    no flags)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_key() -> str:
    """What the probe's answer depends on: the CPU model and its flags, torch's version and its thread count."""
    model, flags = cpu_info()
    digest = hashlib.sha1(" ".join(sorted(flags)).encode()).hexdigest()[:12]
    return f"{model} | flags {digest} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def measure_matmul_rates(rounds: int = PROBE_ROUNDS) -> MatmulRates:
    """Time the probe product in fp32 and bf16, interleaved, best of ``rounds`` each after one warm-up (oneDNN builds
    its bf16 kernel on the first call). Where bf16 is more than twice as slow after the first round, it stops: the
    answer is clear, and on CPUs without bf16 units each bf16 product takes ~10x the fp32 time."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_ROWS, PROBE_HIDDEN, generator=generator)
    weight = torch.randn(PROBE_INTERMEDIATE, PROBE_HIDDEN, generator=generator) * 0.02
    operands = {torch.float32: (x, weight), torch.bfloat16: (x.bfloat16(), weight.bfloat16())}
    flops = 2 * PROBE_ROWS * PROBE_HIDDEN * PROBE_INTERMEDIATE
    best = dict.fromkeys(operands, float("inf"))
    with torch.inference_mode():
        for a, b in operands.values():
            F.linear(a, b)
        for _ in range(rounds):
            for dtype, (a, b) in operands.items():
                start = time.perf_counter()
                F.linear(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - start)
            if best[torch.bfloat16] > 2 * best[torch.float32]:
                break
    return MatmulRates(flops / best[torch.float32] / 1e9, flops / best[torch.bfloat16] / 1e9)


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "qwen3_rag_components" / CACHE_FILE


@functools.cache
def cpu_matmul_rates() -> MatmulRates:
    """This CPU's probe rates: measured once per process, and kept on disk per :func:`cpu_key` so later processes
    skip it (0.4-0.9 s on an AVX2 EPYC; delete the file to measure again)."""
    key, path = cpu_key(), cache_path()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(entry := known.get(key), dict):
        try:
            return MatmulRates(float(entry["float32"]), float(entry["bfloat16"]))
        except (KeyError, TypeError, ValueError):
            pass
    start = time.perf_counter()
    rates = measure_matmul_rates()
    logger.info(
        "measured this CPU's matrix products in %.0f ms: fp32 %.0f, bf16 %.0f GFLOP/s (%s)",
        (time.perf_counter() - start) * 1000,
        rates.float32,
        rates.bfloat16,
        key,
    )
    known = known if isinstance(known, dict) else {}
    known[key] = asdict(rates)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(known, indent=1))
        temporary.replace(path)
    except OSError:  # a read-only home: measure again in the next process
        pass
    return rates


def choose_dtype(dtype: str | torch.dtype | None, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype to run in, and why (for the load log line and every call's meta).

    ``None`` takes ``$QWEN3_RAG_DTYPE`` when set, else bf16 on CUDA (fp16 can overflow in Qwen3); on a CPU the faster of
    fp32 and bf16 as measured by :func:`cpu_matmul_rates`, where bf16 must win by ``BF16_MARGIN`` (bf16 units, as on
    AMX Xeons and Zen 4, win by 2-6x; without them bf16 is slower); fp32 elsewhere. fp32 is the exact path (scores
    within 1e-5 of the official fp32 code); bf16 trades ~1e-2 for speed.
    """
    check_dtype(dtype)
    if dtype is not None:
        return (DTYPES[dtype] if isinstance(dtype, str) else dtype), "asked for"
    if variable := os.environ.get(DTYPE_VARIABLE):
        check_dtype(variable, f"${DTYPE_VARIABLE}")
        return DTYPES[variable], f"from ${DTYPE_VARIABLE}"
    if device.type == "cuda":
        return torch.bfloat16, "default on CUDA"
    if device.type != "cpu":
        return torch.float32, f"default on {device.type}"
    rates = cpu_matmul_rates()
    measured = (
        f"bf16 matmul measured at {rates.bf16_speedup:.2f}x fp32 ({rates.bfloat16:.0f} vs {rates.float32:.0f} GFLOP/s)"
    )
    if rates.bf16_speedup >= BF16_MARGIN:
        return torch.bfloat16, f"default on this CPU: {measured}; dtype='float32' for the exact path"
    return torch.float32, f"default on this CPU: {measured}, under the {BF16_MARGIN}x bf16 needs"


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
