"""Helpers shared by the benchmarks: seeded workloads, timing, resident memory, matmul rate, FLOP counts, tables."""

from __future__ import annotations

import argparse
import functools
import gc
import math
import platform
import random
import re
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import psutil
import torch

from qwen3_rag_components.engine.forward import trim_heap
from qwen3_rag_components.engine.placement import choose_dtype, cpu_info
from qwen3_rag_components.engine.quantize import int8_product
from qwen3_rag_components.engine.scheduler import join_workers
from qwen3_rag_components.testing import QWEN3_0_6B, write_embedding_checkpoint, write_reranker_checkpoint

T = TypeVar("T")

# ------------------------------------------------------------------------------------------------ workloads


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    description: str
    documents: int
    median_words: float
    sigma: float
    min_words: int
    max_words: int
    seed: int


@dataclass(frozen=True)
class Workload:
    spec: WorkloadSpec
    query: str
    documents: list[str]

    @property
    def name(self) -> str:
        return self.spec.name


WORKLOADS = {
    "R": WorkloadSpec("R", "passages", 100, 60, 0.8, 4, 400, seed=1),
    "S": WorkloadSpec("S", "short product-like documents", 200, 12, 0.5, 2, 60, seed=2),
}


@functools.lru_cache(maxsize=1)
def english_words() -> tuple[str, ...]:
    """Every word of Python's own reference-manual text, in order and with repeats.

    Drawing from the running text keeps natural word frequencies, so BPE token counts per word are realistic
    (common words are one token, rarer technical words split into several).
    """
    from pydoc_data.topics import topics

    return tuple(word.lower() for word in re.findall(r"\b[A-Za-z][a-z]+\b", " ".join(topics.values())))


def _sentences(words: Sequence[str], rng: random.Random) -> str:
    """Capitalised sentences of 6-18 words ending with a period, so documents look like prose."""
    out: list[str] = []
    start = 0
    while start < len(words):
        end = start + rng.randint(6, 18)
        sentence = list(words[start:end])
        sentence[0] = sentence[0].capitalize()
        out.append(" ".join(sentence) + ".")
        start = end
    return " ".join(out)


def make_workload(spec: WorkloadSpec, max_documents: int | None = None) -> Workload:
    """One short question and ``spec.documents`` documents with lognormal word counts (clipped), all seeded."""
    rng = random.Random(spec.seed)
    vocabulary = english_words()
    keywords = [w for w in vocabulary if len(w) >= 4]  # content words, so the question reads like a search query
    query = f"What is the {' '.join(rng.choices(keywords, k=rng.randint(3, 6)))}?"
    documents = []
    for _ in range(spec.documents if max_documents is None else min(max_documents, spec.documents)):
        count = round(rng.lognormvariate(math.log(spec.median_words), spec.sigma))
        count = min(max(count, spec.min_words), spec.max_words)
        documents.append(_sentences(rng.choices(vocabulary, k=count), rng))
    return Workload(spec, query, documents)


# ------------------------------------------------------------------------------------------------ checkpoints

CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def random_checkpoint(kind: str, layers: int) -> Path:
    """A random Qwen3 ``kind`` ("reranker": tied Qwen3ForCausalLM, or "embedder": Qwen3Model) of the real 0.6B
    geometry with ``layers`` layers, written once into ``bench/.cache`` and reused by every benchmark."""
    path = CACHE_DIR / f"{kind}-L{layers}"
    if not (path / "model.safetensors").exists():
        print(f"writing a random {layers}-layer {kind} of the Qwen3-0.6B geometry to {path} ...", flush=True)
        geometry = QWEN3_0_6B.with_layers(layers)
        if kind == "reranker":
            write_reranker_checkpoint(path, geometry=geometry, tied=True, seed=0)
        else:
            write_embedding_checkpoint(path, geometry=geometry, seed=0)
    return path


# ------------------------------------------------------------------------------------------------ time, memory


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where that is not possible (non-Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """VmHWM (resettable) on Linux, else the process-lifetime peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 2**20 if platform.system() == "Darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so the next peer's RSS does not carry the previous one's.
    An engine's pack worker outlives its caller's last pack by a moment (its workspace too): wait for it to leave."""
    join_workers()
    gc.collect()
    trim_heap()


@dataclass
class Measurement(Generic[T]):
    seconds: list[float]  # one per repeat
    rss_before_mb: float  # resident set just before the timed calls (includes loaded weights)
    peak_mb: float  # peak resident set during the timed calls
    peak_is_per_call: bool  # False: peak_mb is the process-lifetime peak (the reset was not possible)
    result: T  # the last call's result

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)


def measure(fn: Callable[[], T], repeat: int = 1) -> Measurement[T]:
    """Time ``fn`` ``repeat`` times and record resident memory around the calls."""
    release_memory()
    before = rss_mb()
    per_call = reset_peak_rss()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return Measurement(seconds, before, peak_rss_mb(), per_call, result)


# ------------------------------------------------------------------------------------------------ machine, FLOPs


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 4096, repeat: int = 3) -> float:
    """Best-of-``repeat`` rate of an n×n by n×n ``F.linear`` (the weight layout of a model's layers) in ``dtype``, in
    GFLOP/s: the roofline for utilisation in that dtype. (A plain ``torch.mm(a, b)`` in bf16 takes a far slower path
    on CPUs without native bf16, so it would not be the rate a model can reach.)"""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.nn.functional.linear(a, b)  # warm-up: thread pool, page faults
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        torch.nn.functional.linear(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def int8_matmul_gflops(n: int = 4096, repeat: int = 3) -> float:
    """Best-of-``repeat`` rate of the int8 kernel ``quantization="int8"`` runs (oneDNN, uint8 × int8, int32 sums),
    on an n×n by n×n product without the per-token quantization around it, in GFLOP/s: the int8 roofline."""
    activations = torch.randint(0, 256, (n, n), dtype=torch.uint8)
    packed = torch.ops.onednn.qlinear_prepack(torch.randint(-63, 64, (n, n), dtype=torch.int8), None)
    scale = torch.ones(n)
    int8_product(activations, packed, scale)  # warm-up: thread pool, page faults, the kernel for this shape
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        int8_product(activations, packed, scale)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


BENCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# What decides the matmul rates: fp32 and bf16 units, and the int8 ones (VNNI sums uint8 × int8 into int32 directly)
MATMUL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=[*BENCH_DTYPES, "both"],
        default=None,
        help="dtype of every peer (default: both where dtype=None picks bf16 on this CPU, measured; else float32)",
    )


def parse_with_peers(
    parser: argparse.ArgumentParser, peer_order: Sequence[str], argv: list[str] | None
) -> argparse.Namespace:
    """Parse with a ``--peers`` option; ``args.peers`` comes back in table order, ours always among them."""
    parser.add_argument(
        "--peers",
        nargs="+",
        choices=peer_order,
        default=list(peer_order),
        help="peers to run (ours always runs; the report names the |Δ| reference)",
    )
    args = parser.parse_args(argv)
    args.peers = [name for name in peer_order if name in {*args.peers, "ours"}]
    return args


def bench_dtypes(choice: str | None) -> list[str]:
    """The dtypes to run, fp32 first: its first peer is the |Δ| reference of every dtype."""
    if choice is None:
        choice = "both" if choose_dtype(None, torch.device("cpu"))[0] == torch.bfloat16 else "float32"
    return list(BENCH_DTYPES) if choice == "both" else [choice]


def dtype_json_path(path: Path, dtype: str, dtypes: list[str]) -> Path:
    """``path`` for the first dtype run; ``<stem>-<dtype>.json`` for the others."""
    return path if dtype == dtypes[0] else path.with_stem(f"{path.stem}-{dtype}")


def cpu_flags() -> str:
    """The CPU flags that decide fp32 and bf16 matmul speed, as /proc/cpuinfo lists them."""
    flags = cpu_info()[1]
    if not flags:
        return "unknown"
    return " ".join(flag for flag in MATMUL_FLAGS if flag in flags) or "none of " + " ".join(MATMUL_FLAGS)


def cpu_name() -> str:
    return cpu_info()[0]


@dataclass(frozen=True)
class DecoderShape:
    layers: int
    heads: int
    head_dim: int
    non_embedding_params: int
    readout_only_params: (
        int  # per layer: q_proj, o_proj and MLP, which the engine's last layer runs on readout rows only
    )


def decoder_shape(model: torch.nn.Module) -> DecoderShape:
    """Shape of a transformers decoder; non-embedding parameters exclude the input embedding (and a tied head)."""
    config = model.config
    embedding = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())  # a tied output head is the same tensor, counted once
    attention = config.hidden_size * config.num_attention_heads * config.head_dim
    readout_only = 2 * attention + 3 * config.hidden_size * config.intermediate_size
    return DecoderShape(
        config.num_hidden_layers, config.num_attention_heads, config.head_dim, total - embedding, readout_only
    )


def _attention_pairs(prefix_length: int, item_lengths: Sequence[int]) -> float:
    """(query, key) pairs of exact causal attention: the prefix once, each item over the prefix and itself."""
    return prefix_length * (prefix_length + 1) / 2 + sum(n * (prefix_length + (n + 1) / 2) for n in item_lengths)


def useful_flops(shape: DecoderShape, prefix_length: int, item_lengths: Sequence[int]) -> float:
    """FLOPs a perfect engine needs: the shared prefix once, each item once, exact causal attention.

    Dense layers: 2 × non-embedding parameters per token. Attention per layer (QKᵀ and PV, 2 FLOPs per MAC):
    4·H·D per (query, key) pair; an item of length n after a prefix of length p has n·(p + (n+1)/2) pairs, the
    prefix itself p·(p+1)/2. For embedding texts use ``prefix_length=0``.
    """
    tokens = prefix_length + sum(item_lengths)
    pairs = _attention_pairs(prefix_length, item_lengths)
    return 2 * shape.non_embedding_params * tokens + shape.layers * 4 * shape.heads * shape.head_dim * pairs


def readout_only_savings(shape: DecoderShape, prefix_length: int, item_lengths: Sequence[int]) -> float:
    """Of ``useful_flops``, what the engine skips: in the last layer only each item's last token needs a query,
    attention output, o_proj and MLP (every token still needs its key and value)."""
    skipped_tokens = prefix_length + sum(item_lengths) - len(item_lengths)
    readout_pairs = sum(prefix_length + n for n in item_lengths)
    skipped_pairs = _attention_pairs(prefix_length, item_lengths) - readout_pairs
    return 2 * shape.readout_only_params * skipped_tokens + 4 * shape.heads * shape.head_dim * skipped_pairs


# ------------------------------------------------------------------------------------------------ output


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([f"{first:<{widths[0]}}", *(f"{c:>{w}}" for c, w in zip(rest, widths[1:], strict=True))])

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def format_ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"
