"""Backpressure: a bound on requests in flight and on tokens queued for the model, refused with 429 past them.

TEI answers ``429 Model is overloaded`` past ``--max-concurrent-requests``; this server does the same, and also past
``--max-queued-tokens`` (the tokens of admitted requests that have not finished), so that a burst of large requests
waits at the client rather than in this process's memory. Every refusal carries ``Retry-After``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..engine.options import DEFAULT_MAX_TOKENS_PER_PACK
from .errors import RequestError
from .metrics import Metrics

RETRY_AFTER_SECONDS = 1


def default_max_concurrent_requests() -> int:
    """4 requests per CPU core, at least 16: enough to keep every pack full, few enough to answer in time."""
    return max(16, 4 * (os.cpu_count() or 1))


DEFAULT_MAX_QUEUED_TOKENS = 32 * DEFAULT_MAX_TOKENS_PER_PACK  # 32 full packs waiting


class Admission:
    """Counts what the event loop admitted (one thread: no lock) and refuses past the limits."""

    def __init__(self, max_requests: int, max_queued_tokens: int, metrics: Metrics) -> None:
        self.max_requests, self.max_queued_tokens, self.metrics = max_requests, max_queued_tokens, metrics
        self.requests = 0
        self.queued_tokens = 0
        metrics.queued_tokens.set_function(lambda: self.queued_tokens)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Around a whole request: refused while ``max_requests`` are in flight."""
        if self.requests >= self.max_requests:
            self._refuse(
                "requests",
                f"Model is overloaded: {self.requests} requests are in flight, the server's limit "
                "(--max-concurrent-requests). Retry later.",
            )
        self.requests += 1
        try:
            yield
        finally:
            self.requests -= 1

    @contextmanager
    def tokens(self, tokens: int) -> Iterator[None]:
        """Around a planned call's compute: refused where its tokens would pass ``max_queued_tokens``. A call alone
        is admitted whatever its size (the per-request limits bound it), so no request is refused for ever."""
        if self.queued_tokens and self.queued_tokens + tokens > self.max_queued_tokens:
            self._refuse(
                "tokens",
                f"Model is overloaded: {self.queued_tokens} tokens are queued and this request adds {tokens}, past "
                f"the server's limit of {self.max_queued_tokens} (--max-queued-tokens). Retry later.",
            )
        self.queued_tokens += tokens
        try:
            yield
        finally:
            self.queued_tokens -= tokens

    def _refuse(self, limit: str, message: str) -> None:
        self.metrics.rejections.labels(limit).inc()
        raise RequestError(429, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
