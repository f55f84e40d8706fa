"""The HTTP app: Cohere/Jina and TEI rerank, OpenAI and TEI embeddings, health, models and metrics.

A thin adapter over the service layer (:mod:`qwen3_rag_components.engine.service`), like the Haystack components:
requests are checked against the server's limits and admitted under its backpressure bounds, then awaited on the
engines' shared schedulers, so concurrent requests are packed together and peak memory is one pack's whatever the
number of clients. A client that goes away cancels its packs that have not started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..engine import EmbedResult, EngineHolder, RunMeta
from ..engine.errors import InvalidParameter
from ..engine.options import Chunking
from ..engine.service import Embedder, Ranking, Reranker, TextsTooLong
from .admission import DEFAULT_MAX_QUEUED_TOKENS, Admission, default_max_concurrent_requests
from .errors import BodyLimit, RequestError, request_error_handler, validation_error_handler
from .metrics import Metrics
from .schemas import EmbeddingsRequest, RerankRequest, TeiEmbedRequest, TeiRerankRequest

T = TypeVar("T", Ranking, EmbedResult)
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request whose client went away; nobody reads the response


@dataclass(frozen=True)
class ServeLimits:
    """What one request may hold (larger requests get a 413 naming the limit and its flag), and how much work the
    server admits at once (past it: 429 with ``Retry-After``)."""

    max_documents: int = 1000  # documents (rerank) or inputs (embeddings) per request
    max_chars: int = 100_000  # characters per text, query included
    max_body_bytes: int = 16 * 2**20
    max_concurrent_requests: int = field(default_factory=default_max_concurrent_requests)
    max_queued_tokens: int = DEFAULT_MAX_QUEUED_TOKENS  # tokens of admitted requests not yet computed


@dataclass
class ServedModel:
    name: str  # the id clients see in /v1/models and responses
    holder: EngineHolder[Any]


@dataclass
class ServeState:
    """What the route handlers share, kept on ``app.state.serve``."""

    reranker: ServedModel | None
    embedder: ServedModel | None
    limits: ServeLimits
    api_key: str | None
    metrics: Metrics
    admission: Admission


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
    for model in (reranker, embedder):
        if model is not None:
            metrics.packs.labels(model.name).set_function(_packs_started(model.holder))
    app = FastAPI(title="qwen3-rag-components", docs_url=None, redoc_url=None, openapi_url=None)
    admission = Admission(limits.max_concurrent_requests, limits.max_queued_tokens, metrics)
    app.state.serve = ServeState(reranker, embedder, limits, api_key, metrics, admission)
    app.add_exception_handler(RequestError, request_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.middleware("http")(metrics.middleware)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    app.include_router(router)
    return app


def _packs_started(holder: EngineHolder[Any]) -> Any:
    return lambda: holder.engine.scheduler.packs_run if holder.loaded else 0


# --- dependencies -----------------------------------------------------------------------------------------------


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


def authorized(request: Request, state: ServeState = Depends(serve_state)) -> None:  # noqa: B008
    if state.api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guessed key was right
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), state.api_key.encode()):
        raise RequestError(401, "A valid API key is required: send 'Authorization: Bearer <key>'.")


async def admitted(state: ServeState = Depends(serve_state)) -> AsyncIterator[Admission]:  # noqa: B008
    """One of the ``--max-concurrent-requests`` slots, for the whole request."""
    with state.admission.request():
        yield state.admission


def served_reranker(state: ServeState = Depends(serve_state)) -> ServedModel:  # noqa: B008
    return _served(state.reranker, "reranker", "--reranker")


def served_embedder(state: ServeState = Depends(serve_state)) -> ServedModel:  # noqa: B008
    return _served(state.embedder, "embedder", "--embedder")


def _served(model: ServedModel | None, kind: str, flag: str) -> ServedModel:
    if model is None:
        raise RequestError(404, f"This server has no {kind}; start it with {flag} to serve this route.")
    return model


# --- checks and engine calls ------------------------------------------------------------------------------------


def check_texts(limits: ServeLimits, texts: list[str], field_name: str) -> None:
    if not texts:
        raise RequestError(422, f"{field_name} is empty; send at least one text.", field_name)
    if len(texts) > limits.max_documents:
        raise RequestError(
            413,
            f"{field_name} holds {len(texts)} texts; this server takes at most {limits.max_documents} per request "
            "(--max-documents). Split the request.",
            field_name,
        )
    for index, text in enumerate(texts):
        check_length(limits, text, f"{field_name}[{index}]")


def check_length(limits: ServeLimits, text: str, field_name: str) -> None:
    if len(text) > limits.max_chars:
        raise RequestError(
            413,
            f"{field_name} has {len(text)} characters; this server takes at most {limits.max_chars} per text "
            "(--max-chars).",
            field_name,
        )


async def engine_call(
    request: Request, state: ServeState, model: ServedModel, work: Awaitable[T], texts_field: str
) -> T:
    """``work``'s result, its meta counted; the service's refusals as 4xx naming the request's field; cancelled
    (its unstarted packs dropped) when the client disconnects first."""
    try:
        result = await _unless_disconnected(request, work, state.metrics)
    except TextsTooLong as error:
        raise RequestError(
            413,
            f"{error.count} of {texts_field} are longer than the model's max_length; send "
            '"truncate": true to cut them by the official rule.',
            texts_field,
        ) from error
    except InvalidParameter as error:
        param = texts_field if error.param in ("documents", "texts") else error.param
        raise RequestError(422, error.message, param) from error
    except (TypeError, ValueError) as error:  # e.g. a query too long for max_length
        raise RequestError(422, str(error)) from error
    state.metrics.engine_call(model.name, result.meta)
    return result


async def _unless_disconnected(request: Request, work: Awaitable[T], metrics: Metrics) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # the client went away, or this handler was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        metrics.disconnects.inc()
        raise RequestError(CLIENT_CLOSED_REQUEST, "The client closed the connection; the request was cancelled.")
    return task.result()


async def _disconnect(request: Request) -> None:
    """Returns once the client has gone away (the body is read by then, so only disconnect messages remain)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# --- routes -----------------------------------------------------------------------------------------------------

router = APIRouter()
guarded = [Depends(authorized)]


@router.get("/health")
async def health(state: ServeState = Depends(serve_state)) -> dict[str, Any]:  # noqa: B008
    return {
        "status": "ok",
        "reranker": state.reranker.name if state.reranker else None,
        "embedder": state.embedder.name if state.embedder else None,
    }


@router.get("/v1/models", dependencies=guarded)
async def models(state: ServeState = Depends(serve_state)) -> dict[str, Any]:  # noqa: B008
    served = [m for m in (state.reranker, state.embedder) if m is not None]
    data = [{"id": m.name, "object": "model", "created": 0, "owned_by": "qwen3-rag-components"} for m in served]
    return {"object": "list", "data": data}


@router.get("/metrics", dependencies=guarded)
async def prometheus(state: ServeState = Depends(serve_state)) -> Response:  # noqa: B008
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/v1/rerank", dependencies=guarded)
@router.post("/v2/rerank", dependencies=guarded)
async def rerank(
    body: RerankRequest,
    request: Request,
    state: ServeState = Depends(serve_state),  # noqa: B008
    model: ServedModel = Depends(served_reranker),  # noqa: B008
    admission: Admission = Depends(admitted),  # noqa: B008
) -> dict[str, Any]:
    """Cohere (v1 and v2) and Jina: results best first, ``top_n`` of them, documents on request; Cohere's
    ``max_tokens_per_doc`` scores a longer document by its best window of that many tokens."""
    texts = [doc if isinstance(doc, str) else doc.text for doc in body.documents]
    check_length(state.limits, body.query, "query")
    check_texts(state.limits, texts, "documents")
    chunking = None if body.max_tokens_per_doc is None else Chunking(body.max_tokens_per_doc)
    work = Reranker(model.holder).arank(
        body.query, texts, top_k=body.top_n, instruction=body.instruction, chunking=chunking, admit=admission.tokens
    )
    ranking: Ranking = await engine_call(request, state, model, work, "documents")
    results: list[dict[str, Any]] = [{"index": i, "relevance_score": score} for i, score in ranking.ranked()]
    if body.return_documents:
        for result in results:
            result["document"] = {"text": texts[result["index"]]}
    meta = ranking.meta
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


@router.post("/rerank", dependencies=guarded)
async def tei_rerank(
    body: TeiRerankRequest,
    request: Request,
    state: ServeState = Depends(serve_state),  # noqa: B008
    model: ServedModel = Depends(served_reranker),  # noqa: B008
    admission: Admission = Depends(admitted),  # noqa: B008
) -> list[dict[str, Any]]:
    """TEI: ``[{index, score, text?}]`` best first; ``raw_scores`` gives ``logit_yes - logit_no``; ``truncate=false``
    refuses over-long texts from their token counts, before any forward pass."""
    check_length(state.limits, body.query, "query")
    check_texts(state.limits, body.texts, "texts")
    work = Reranker(model.holder).arank(
        body.query, body.texts, return_logits=body.raw_scores, truncate=body.truncate, admit=admission.tokens
    )
    ranking: Ranking = await engine_call(request, state, model, work, "texts")
    return [
        {"index": i, "score": score, **({"text": body.texts[i]} if body.return_text else {})}
        for i, score in ranking.ranked()
    ]


@router.post("/v1/embeddings", dependencies=guarded)
async def embeddings(
    body: EmbeddingsRequest,
    request: Request,
    state: ServeState = Depends(serve_state),  # noqa: B008
    model: ServedModel = Depends(served_embedder),  # noqa: B008
    admission: Admission = Depends(admitted),  # noqa: B008
) -> dict[str, Any]:
    """OpenAI: one vector per input, in input order; ``encoding_format="base64"`` gives the little-endian bytes
    (float32, or 1 byte a value for the int8/uint8/binary ``precision``)."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    check_texts(state.limits, texts, "input")
    is_query = body.input_type == "query" or body.instruction is not None
    work = Embedder(model.holder).aembed(
        texts,
        kind="queries" if is_query else "documents",
        instruction=body.instruction,
        dimensions=body.dimensions,
        precision=body.precision,
        ranges=body.ranges,
        admit=admission.tokens,
    )
    result = await engine_call(request, state, model, work, "input")
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
        for i, vector in enumerate(result.embeddings)
    ]
    meta: RunMeta = result.meta
    usage = {"prompt_tokens": meta.padding_free_tokens, "total_tokens": meta.padding_free_tokens}
    return {"object": "list", "data": data, "model": body.model or model.name, "usage": usage, "meta": meta.to_dict()}


@router.post("/embed", dependencies=guarded)
async def tei_embed(
    body: TeiEmbedRequest,
    request: Request,
    state: ServeState = Depends(serve_state),  # noqa: B008
    model: ServedModel = Depends(served_embedder),  # noqa: B008
    admission: Admission = Depends(admitted),  # noqa: B008
) -> list[list[float]]:
    """TEI: ``[[...], ...]`` in input order; ``prompt_name="query"`` adds the query instruction; ``truncate=false``
    refuses over-long texts before any forward pass."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_texts(state.limits, texts, "inputs")
    work = Embedder(model.holder).aembed(
        texts,
        kind="queries" if body.prompt_name == "query" else "documents",
        dimensions=body.dimensions,
        normalize=body.normalize,
        truncate=body.truncate,
        admit=admission.tokens,
    )
    result = await engine_call(request, state, model, work, "inputs")
    return result.embeddings.tolist()


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | list[int] | str:
    if encoding_format == "base64":
        little_endian = vector.astype(vector.dtype.newbyteorder("<"))  # float32: 4 bytes a value, int8/uint8: 1
        return base64.b64encode(little_endian.tobytes()).decode("ascii")
    return vector.tolist()
