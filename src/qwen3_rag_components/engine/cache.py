"""One loaded engine per (kind, checkpoint, device, dtype, quantization, hub options), shared by every component
that asks for it.

Options that do not need another model load (instruction, max_length, pack budget, ...) are applied with
``engine.with_options(...)``, which shares the loaded weights and the model's scheduler.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import torch

from .embed import Qwen3EmbedEngine
from .options import EmbedOptions, LoadSpec, RerankOptions
from .quantize import Quantization
from .rerank import Qwen3RerankEngine

EngineT = TypeVar("EngineT", Qwen3RerankEngine, Qwen3EmbedEngine)

_engines: dict[tuple[type, LoadSpec], Any] = {}
_lock = threading.Lock()


def shared_engine(
    engine_class: type[EngineT], spec: LoadSpec, options: RerankOptions | EmbedOptions | None = None
) -> EngineT:
    """The engine of this process for ``spec`` (loaded on first use) with ``options`` applied."""
    key = (engine_class, spec.resolved())
    with _lock:  # one load per key, even when components warm up from several threads at once
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = engine_class.load(key[1])
    return engine if options is None else engine.with_options(options)


def get_engine(
    engine_class: type[EngineT],
    model: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    quantization: Quantization | None = None,
    **options: Any,
) -> EngineT:
    """The shared engine for this checkpoint and placement, loaded on first use, with ``options`` changed."""
    spec = LoadSpec(model, device, dtype, local_files_only, revision, token, quantization)
    engine = shared_engine(engine_class, spec)
    return engine.with_options(**options) if options else engine


def clear_engine_cache() -> None:
    """Forget every shared engine (their memory is freed once no component holds them)."""
    with _lock:
        _engines.clear()
