"""Load the models, then run the app under uvicorn until SIGINT or SIGTERM (in-flight requests finish first)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from ..engine import EmbedOptions, EngineHolder, LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, RerankOptions
from ..engine.meta import dtype_name
from .app import ServedModel, ServeLimits, create_app

logger = logging.getLogger(__name__)


def load_models(
    reranker: LoadSpec | None,
    embedder: LoadSpec | None,
    *,
    rerank_options: RerankOptions,
    embed_options: EmbedOptions,
) -> tuple[ServedModel | None, ServedModel | None]:
    """The served models, loaded now: a bad path or an unavailable device fails before the server listens."""
    served_reranker = None if reranker is None else _loaded(Qwen3RerankEngine, reranker, rerank_options)
    served_embedder = None if embedder is None else _loaded(Qwen3EmbedEngine, embedder, embed_options)
    return served_reranker, served_embedder


def _loaded(engine_class: type[Any], spec: LoadSpec, options: RerankOptions | EmbedOptions) -> ServedModel:
    start = time.perf_counter()
    holder = EngineHolder(engine_class, spec, options)
    engine = holder.engine
    seconds = time.perf_counter() - start
    kind = dtype_name(engine.dtype) + (f", {engine.quantization} projections" if engine.quantization else "")
    logger.info("loaded %s on %s (%s) in %.1f s", spec.model, engine.device, kind, seconds)
    return ServedModel(spec.model, holder)


def run_server(
    reranker: ServedModel | None,
    embedder: ServedModel | None,
    *,
    host: str,
    port: int,
    limits: ServeLimits,
    api_key: str | None,
    graceful_timeout: float | None = 30.0,
) -> int | None:
    """Serve until SIGTERM or SIGINT: then stop accepting, let the requests in flight finish for up to
    ``graceful_timeout`` seconds (``None``: as long as they take), and return the signal that stopped the server."""
    app = create_app(reranker, embedder, limits=limits, api_key=api_key)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=graceful_timeout
    )
    server = _DrainingServer(config)
    server.run()
    return server.stopped_by


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, except that a signal it drained for is not raised again afterwards: a drained shutdown
    exits with the command's own status (0 for SIGTERM) instead of dying of the signal."""

    stopped_by: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = self._captured_signals  # uvicorn re-raises these once its handlers are restored
            self.stopped_by = captured[0] if captured else None
            captured.clear()
