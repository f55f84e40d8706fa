"""Refusals as JSON that names the field and the limit: one shape for every route, readable by every client.

The body is ``{"message": ..., "error": {"message", "type", "param", "code"}}``: the ``error`` object is what the
OpenAI SDK reads, the top-level ``message`` what the Cohere SDK reads, and a person reads either.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RequestError(Exception):
    """A refused request: ``status`` (4xx), a message that says what to change, and the field it is about."""

    def __init__(
        self, status: int, message: str, param: str | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers


def error_body(status: int, message: str, param: str | None) -> dict[str, Any]:
    kind = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large", 429: "overloaded"}.get(
        status, "invalid_request_error"
    )
    return {"message": message, "error": {"message": message, "type": kind, "param": param, "code": status}}


def error_response(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer", **(headers or {})} if status == 401 else headers
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


async def request_error_handler(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestError)
    return error_response(error.status, error.message, error.param, error.headers)


async def validation_error_handler(_request: Request, error: Exception) -> JSONResponse:
    """Malformed JSON is a 400; a missing field or a wrong type a 422 naming the field (``documents[2]``)."""
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    if errors[0].get("type") == "json_invalid":
        first = errors[0]
        return error_response(400, f"The body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')}).")
    # Of a union's alternatives, the deepest error says most: input=[[1]] is about input[0], not "input is no str".
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    path = field_path(first.get("loc", ()))
    message = first.get("msg", "invalid value")
    return error_response(422, f"{path}: {message}." if path else f"{message}.", path or None)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "documents", 2, "str")`` -> ``"documents[2]"``: the body prefix and union-member tags are dropped."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "body" and _is_field_name(part):
            path += f".{part}" if path else part
    return path


def _is_field_name(part: str) -> bool:
    """Request fields are snake_case; pydantic's union-member tags are type names ('str', 'DocumentText')."""
    return part.isidentifier() and part.islower() and part not in {"str", "int", "bool", "float", "list", "dict"}


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with a 413 before it is parsed.

    The body is read here (at most ``limit`` bytes of it are kept), then handed to the app: a declared
    ``content-length`` over the limit is refused at once, a chunked body as soon as it passes the limit.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: disconnect messages
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"The body is larger than the server's limit of {self.limit} bytes (--max-body-bytes)."
        body = json.dumps(error_body(413, message, None)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
