"""One loaded engine per (kind, checkpoint, device, dtype, hub options), shared by every component that asks for it.

Options that do not need another model load (instruction, max_length, pack budget) are applied with
``engine.with_options(...)``, which shares the loaded weights.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import torch

from .embed import Qwen3EmbedEngine
from .loading import resolve_device, resolve_dtype
from .rerank import Qwen3RerankEngine

EngineT = TypeVar("EngineT", Qwen3RerankEngine, Qwen3EmbedEngine)

_engines: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def get_engine(
    engine_class: type[EngineT],
    model: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    **options: Any,
) -> EngineT:
    """The shared engine for this checkpoint and placement, loaded on first use, with ``options`` applied."""
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    key = (engine_class.__name__, model, str(resolved_device), str(resolved_dtype), local_files_only, revision, token)
    with _lock:  # one load per key, even when components warm up from several threads at once
        engine = _engines.get(key)
        if engine is None:
            engine = engine_class.from_pretrained(
                model,
                device=resolved_device,
                dtype=resolved_dtype,
                local_files_only=local_files_only,
                revision=revision,
                token=token,
            )
            _engines[key] = engine
    return engine.with_options(**options) if options else engine


def get_adapter_engine(adapter: Any, *, device: str | torch.device | None, token: str | bool | None) -> Any:
    """The shared engine of a framework adapter (Haystack component, LangChain class, Ray callable).

    ``adapter.engine_class`` is the engine; ``model``, ``dtype``, ``local_files_only``, ``revision`` and every engine
    option (``engine_class.option_names``) are read from the adapter's same-named attributes, where it has them.
    ``device`` and ``token`` come resolved, since each framework stores them its own way.
    """
    engine_class = adapter.engine_class
    options = {name: getattr(adapter, name) for name in engine_class.option_names if hasattr(adapter, name)}
    return get_engine(
        engine_class,
        adapter.model,
        device=device,
        dtype=adapter.dtype,
        local_files_only=adapter.local_files_only,
        revision=adapter.revision,
        token=token,
        **options,
    )


def clear_engine_cache() -> None:
    """Forget every shared engine (their memory is freed once no component holds them)."""
    with _lock:
        _engines.clear()
