"""What one engine call computed (:class:`RunMeta`), and progress reporting while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .forward import PackedRun

Progress = Callable[[int, int], None]  # progress(done, total), called after each pack


@dataclass(frozen=True)
class RunMeta:
    """What one engine call computed."""

    documents: int  # inputs in the call (documents, or texts for the embedder), duplicates included
    unique_documents: int  # inputs actually computed after dedup
    truncated_documents: int  # inputs cut to fit max_length (by the official rule)
    packs: int  # forward passes that held some of this call's inputs (concurrent calls share packs)
    tokens_computed: int  # this call's tokens through the model: its prefixes once per pack, plus its items
    padding_free_tokens: int  # tokens a per-pair path would compute without padding (prefix repeated per input)
    elapsed_ms: float  # the whole call: checks, tokenization, waiting and computing
    queued_ms: float  # waiting for the model while packs of other calls ran
    compute_ms: float  # wall time of the packs this call took part in
    device: str
    dtype: str
    dtype_reason: str = ""  # why this dtype: "asked for", "default on CUDA", the CPU's measured rates, ...
    peak_memory_bytes: int | None = None  # CUDA: torch.cuda.max_memory_allocated while the call's packs ran
    quantization: str | None = None  # "int8" where the projections run int8, else None (all in dtype)
    chunks: int | None = None  # reranking with chunking: the windows scored (after dedup); None without chunking

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def nothing(
        cls, device: torch.device, dtype: torch.dtype, dtype_reason: str = "", quantization: str | None = None
    ) -> RunMeta:
        """The meta of a call with no inputs, which returns without touching the model."""
        return cls(
            0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, str(device), dtype_name(dtype), dtype_reason, quantization=quantization
        )


def run_meta(
    run: PackedRun,
    start: float,
    *,
    device: torch.device,
    dtype: torch.dtype,
    dtype_reason: str,
    quantization: str | None,
    **counts: int,
) -> RunMeta:
    """Meta of a call that started at ``start`` (``time.perf_counter()``) and got ``run`` from the scheduler."""
    return RunMeta(
        **counts,
        dtype_reason=dtype_reason,
        quantization=quantization,
        peak_memory_bytes=run.peak_memory_bytes,
        packs=run.packs,
        tokens_computed=run.tokens_computed,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        device=str(device),
        dtype=dtype_name(dtype),
        queued_ms=run.queued_s * 1000,
        compute_ms=run.compute_s * 1000,
    )


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")  # "float32", as users write it


@contextmanager
def progress_callback(progress: bool | Progress | None, total: int, desc: str) -> Iterator[Progress | None]:
    """``True``: a tqdm bar over ``total`` items on stderr; a callable: used as is; ``False``/``None``: nothing."""
    if callable(progress) or not progress:
        yield progress or None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="text") as bar:
        yield lambda done, _total: bar.update(done - bar.n)
