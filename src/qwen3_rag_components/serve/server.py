"""Load the models, then run the app under uvicorn until SIGINT or SIGTERM (in-flight requests finish first)."""

from __future__ import annotations

import logging
import time
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
) -> None:
    """Serve until interrupted. uvicorn stops accepting on SIGTERM and waits for the requests in flight."""
    app = create_app(reranker, embedder, limits=limits, api_key=api_key)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
