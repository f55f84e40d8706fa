"""The HTTP app: Cohere/Jina and TEI rerank, OpenAI and TEI embeddings, health, models and metrics.

A fourth thin adapter over the engines, like the Haystack components: requests are checked against the server's
limits, then awaited on the engines' shared schedulers, so concurrent requests are packed together and peak memory
is one pack's whatever the number of clients.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..engine import EngineHolder, RunMeta
from .errors import BodyLimit, RequestError, request_error_handler, validation_error_handler
from .metrics import Metrics
from .schemas import EmbeddingsRequest, RerankRequest, TeiEmbedRequest, TeiRerankRequest


@dataclass(frozen=True)
class ServeLimits:
    """What one request may hold; larger requests get a 413 naming the limit and its flag."""

    max_documents: int = 1000  # documents (rerank) or inputs (embeddings) per request
    max_chars: int = 100_000  # characters per text, query included
    max_body_bytes: int = 16 * 2**20


@dataclass
class ServedModel:
    name: str  # the id clients see in /v1/models and responses
    holder: EngineHolder[Any]


def create_app(
    reranker: ServedModel | None,
    embedder: ServedModel | None,
    *,
    limits: ServeLimits | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The app for the given (already loaded or lazily loaded) models; ``api_key`` requires ``Bearer`` auth."""
    limits = limits or ServeLimits()
    metrics = Metrics()
    app = FastAPI(title="qwen3-rag-components", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(RequestError, request_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.middleware("http")(metrics.middleware)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    def authorized(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise RequestError(401, "A valid API key is required: send 'Authorization: Bearer <key>'.")

    guarded = [Depends(authorized)]

    def served(model: ServedModel | None, kind: str, flag: str) -> ServedModel:
        if model is None:
            raise RequestError(404, f"This server has no {kind}; start it with {flag} to serve this route.")
        return model

    def check_limits(texts: list[str], field: str) -> None:
        if not texts:
            raise RequestError(422, f"{field} is empty; send at least one text.", field)
        if len(texts) > limits.max_documents:
            raise RequestError(
                413,
                f"{field} holds {len(texts)} texts; this server takes at most {limits.max_documents} per request "
                "(--max-documents). Split the request.",
                field,
            )
        for index, text in enumerate(texts):
            check_length(text, f"{field}[{index}]")

    def check_length(text: str, field: str) -> None:
        if len(text) > limits.max_chars:
            raise RequestError(
                413,
                f"{field} has {len(text)} characters; this server takes at most {limits.max_chars} per text "
                "(--max-chars).",
                field,
            )

    async def score(model: ServedModel, query: str, texts: list[str], **options: Any) -> tuple[list[float], RunMeta]:
        engine = await model.holder.engine_async()
        try:
            result = await engine.score_with_meta_async(query, texts, **options)
        except (TypeError, ValueError) as error:  # e.g. a query too long for max_length
            raise RequestError(422, str(error)) from error
        metrics.engine_call(model.name, model.holder.record(result.meta))
        return result.scores, result.meta

    async def embed(model: ServedModel, texts: list[str], **options: Any) -> tuple[np.ndarray, RunMeta]:
        engine = await model.holder.engine_async()
        try:
            result = await engine.encode_async(texts, **options)
        except (TypeError, ValueError) as error:  # e.g. dimensions above the hidden size
            field = next((name for name in ("precision", "ranges", "dimensions") if name in str(error)), None)
            raise RequestError(422, str(error), field) from error
        metrics.engine_call(model.name, model.holder.record(result.meta))
        return result.embeddings, result.meta

    def refuse_truncated(meta: RunMeta, field: str) -> None:
        if meta.truncated_documents:
            raise RequestError(
                413,
                f"{meta.truncated_documents} of {field} are longer than the model's max_length; send "
                '"truncate": true to cut them by the official rule.',
                field,
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "reranker": reranker.name if reranker else None,
            "embedder": embedder.name if embedder else None,
        }

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> dict[str, Any]:
        served_models = [m for m in (reranker, embedder) if m is not None]
        data = [
            {"id": m.name, "object": "model", "created": 0, "owned_by": "qwen3-rag-components"} for m in served_models
        ]
        return {"object": "list", "data": data}

    @app.get("/metrics", dependencies=guarded)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/rerank", dependencies=guarded)
    @app.post("/v2/rerank", dependencies=guarded)
    async def rerank(body: RerankRequest) -> dict[str, Any]:
        """Cohere (v1 and v2) and Jina: results best first, ``top_n`` of them, documents on request."""
        model = served(reranker, "reranker", "--reranker")
        texts = [doc if isinstance(doc, str) else doc.text for doc in body.documents]
        check_length(body.query, "query")
        check_limits(texts, "documents")
        scores, meta = await score(model, body.query, texts, instruction=body.instruction)
        order = sorted(range(len(texts)), key=lambda i: -scores[i])[: body.top_n]  # stable: ties keep input order
        results = [{"index": i, "relevance_score": scores[i]} for i in order]
        if body.return_documents:
            for result in results:
                result["document"] = {"text": texts[result["index"]]}
        return {
            "id": str(uuid.uuid4()),
            "model": model.name,
            "results": results,
            "usage": {"total_tokens": meta.tokens_computed},  # Jina's
            "meta": {  # Cohere's fields, then the engine's RunMeta
                "api_version": {"version": "2"},
                "billed_units": {"search_units": 1},
                "tokens": {"input_tokens": meta.tokens_computed},
                "engine": meta.to_dict(),
            },
        }

    @app.post("/rerank", dependencies=guarded)
    async def tei_rerank(body: TeiRerankRequest) -> list[dict[str, Any]]:
        """TEI: ``[{index, score, text?}]`` best first; ``raw_scores`` gives ``logit_yes - logit_no``."""
        model = served(reranker, "reranker", "--reranker")
        check_length(body.query, "query")
        check_limits(body.texts, "texts")
        scores, meta = await score(model, body.query, body.texts, return_logits=body.raw_scores)
        if not body.truncate:
            refuse_truncated(meta, "texts")
        order = sorted(range(len(body.texts)), key=lambda i: -scores[i])
        return [
            {"index": i, "score": scores[i], **({"text": body.texts[i]} if body.return_text else {})} for i in order
        ]

    @app.post("/v1/embeddings", dependencies=guarded)
    async def embeddings(body: EmbeddingsRequest) -> dict[str, Any]:
        """OpenAI: one vector per input, in input order; ``encoding_format="base64"`` gives the little-endian bytes
        (float32, or 1 byte a value for the int8/uint8/binary ``precision``)."""
        model = served(embedder, "embedder", "--embedder")
        texts = [body.input] if isinstance(body.input, str) else body.input
        check_limits(texts, "input")
        is_query = body.input_type == "query" or body.instruction is not None
        vectors, meta = await embed(
            model,
            texts,
            is_query=is_query,
            instruction=body.instruction,
            dimensions=body.dimensions,
            precision=body.precision,
            ranges=body.ranges,
        )
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
            for i, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": meta.padding_free_tokens, "total_tokens": meta.padding_free_tokens}
        return {
            "object": "list",
            "data": data,
            "model": body.model or model.name,
            "usage": usage,
            "meta": meta.to_dict(),
        }

    @app.post("/embed", dependencies=guarded)
    async def tei_embed(body: TeiEmbedRequest) -> list[list[float]]:
        """TEI: ``[[...], ...]`` in input order; ``prompt_name="query"`` adds the query instruction."""
        model = served(embedder, "embedder", "--embedder")
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        check_limits(texts, "inputs")
        vectors, meta = await embed(
            model, texts, is_query=body.prompt_name == "query", dimensions=body.dimensions, normalize=body.normalize
        )
        if not body.truncate:
            refuse_truncated(meta, "inputs")
        return vectors.tolist()

    return app


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | list[int] | str:
    if encoding_format == "base64":
        little_endian = vector.astype(vector.dtype.newbyteorder("<"))  # float32: 4 bytes a value, int8/uint8: 1
        return base64.b64encode(little_endian.tobytes()).decode("ascii")
    return vector.tolist()
