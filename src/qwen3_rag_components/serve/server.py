"""Load the models, then run the app under uvicorn until SIGINT or SIGTERM (in-flight requests finish first)."""

from __future__ import annotations

import logging
import time

import uvicorn

from ..engine import EmbedOptions, EngineHolder, LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, RerankOptions
from .app import ServedModel, ServeLimits, create_app

logger = logging.getLogger(__name__)


def load_models(
    reranker: str | None,
    embedder: str | None,
    *,
    spec: LoadSpec,
    rerank_options: RerankOptions,
    embed_options: EmbedOptions,
) -> tuple[ServedModel | None, ServedModel | None]:
    """The served models, loaded now: a bad path or an unavailable device fails before the server listens.

    ``spec`` gives the placement and hub options; its ``model`` is replaced by each checkpoint's.
    """
    served = []
    for name, engine_class, options in (
        (reranker, Qwen3RerankEngine, rerank_options),
        (embedder, Qwen3EmbedEngine, embed_options),
    ):
        if name is None:
            served.append(None)
            continue
        start = time.perf_counter()
        model_spec = LoadSpec(name, spec.device, spec.dtype, spec.local_files_only, spec.revision, spec.token)
        holder = EngineHolder(engine_class, model_spec, options)
        engine = holder.engine
        logger.info("loaded %s on %s (%s) in %.1f s", name, engine.device, engine.dtype, time.perf_counter() - start)
        served.append(ServedModel(name, holder))
    return served[0], served[1]


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
