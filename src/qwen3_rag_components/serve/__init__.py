"""``qwen3-rag serve``: the Qwen3 reranker and embedder behind the HTTP APIs existing clients speak (extra ``serve``).

Routes: ``POST /v1/rerank`` and ``/v2/rerank`` (Cohere, Jina), ``POST /rerank`` (TEI), ``POST /v1/embeddings``
(OpenAI), ``POST /embed`` (TEI), ``GET /health``, ``GET /v1/models``, ``GET /metrics`` (Prometheus). See
``docs/serve.md``.

Needs the ``serve`` extra: ``pip install "qwen3-rag-components[serve]"``.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as error:
    if error.name is None or error.name.split(".")[0] not in ("fastapi", "prometheus_client", "uvicorn", "starlette"):
        raise
    raise ImportError('qwen3-rag serve needs FastAPI and uvicorn: pip install "qwen3-rag-components[serve]"') from error

from .app import ServedModel, ServeLimits, create_app
from .server import load_models, run_server

__all__ = ["ServeLimits", "ServedModel", "create_app", "load_models", "run_server"]
