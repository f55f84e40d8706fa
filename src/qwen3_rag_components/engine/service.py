"""The one service layer under every adapter: a rerank call and an embed call, each with its async twin.

Every adapter (the Haystack components, the LangChain and LlamaIndex classes, the HTTP routes, the CLI) is format
translation over :class:`Reranker` and :class:`Embedder`: they own the checks, empty input (answered without loading
the model), the refusal of over-long texts before any forward pass, the best-first order, and the meta recorded on
the adapter's :class:`~.holder.EngineHolder`. The sync and async calls share every step but the wait: the sync one
waits on the scheduler in this thread, the async one awaits it (tokenizing in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .embed import EmbedPlan, EmbedResult, Qwen3EmbedEngine
from .errors import InvalidParameter
from .forward import PackedRun
from .holder import EngineHolder
from .meta import Progress, RunMeta, progress_callback
from .options import Chunking, check_positive_int
from .precision import RangesLike
from .prompts import check_query, check_texts
from .rerank import BatchScoreResult, Qwen3RerankEngine, RerankPlan, ScoreResult
from .scheduler import Job

EmbedKind = Literal["documents", "queries"]
# Called with a call's token count once it is planned, around its compute: a server's admission control, which may
# refuse (raise) before any pack runs.
Admit = Callable[[int], AbstractContextManager[object]]
EMBED_KINDS: tuple[EmbedKind, ...] = ("documents", "queries")


class TextsTooLong(InvalidParameter):
    """``truncate=False`` and some texts are longer than ``max_length``: refused from their token counts, before
    any forward pass (a server answers 413)."""

    def __init__(self, param: str, count: int, total: int) -> None:
        super().__init__(
            param,
            f"{count} of the {total} {param} are longer than the model's max_length; shorten them, or allow "
            "truncation to cut them by the official rule.",
        )
        self.count = count


def _admitted(admit: Admit | None, job: Job) -> AbstractContextManager[object]:
    return contextlib.nullcontext() if admit is None else admit(job.tokens)


def ranked_order(scores: Sequence[float], top_k: int | None = None, threshold: float | None = None) -> list[int]:
    """Indices of ``scores`` best first (stable: ties keep the input order), without those below ``threshold``, at
    most ``top_k`` of them (``None``: all)."""
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    if threshold is not None:
        order = [i for i in order if scores[i] >= threshold]
    return order[:top_k]


@dataclass(frozen=True)
class Ranking:
    """A rerank call's answer: every score in input order, and the kept indices best first."""

    scores: list[float]  # one per input text, in input order (P(yes), or logit_yes - logit_no)
    order: list[int]  # indices into the input, best first, at or above the threshold, at most top_k
    meta: RunMeta

    def ranked(self) -> list[tuple[int, float]]:
        """``(index, score)`` pairs, best first."""
        return [(i, self.scores[i]) for i in self.order]


@dataclass(frozen=True)
class _RankCall:
    """A checked rerank call: what both :meth:`Reranker.rank` and :meth:`Reranker.arank` run."""

    query: str
    texts: list[str]
    top_k: int | None
    threshold: float | None
    instruction: str | None
    return_logits: bool
    truncate: bool
    chunking: Chunking | None

    def plan(self, engine: Qwen3RerankEngine) -> RerankPlan:
        plan = engine.plan([(self.query, self.texts)], self.instruction, self.chunking)
        if not self.truncate and plan.truncated_documents:
            raise TextsTooLong("documents", plan.truncated_documents, len(self.texts))
        return plan

    def ranking(self, scores: list[float], meta: RunMeta) -> Ranking:
        return Ranking(scores, ranked_order(scores, self.top_k, self.threshold), meta)


class Reranker:
    """The rerank call of every adapter, over its :class:`~.holder.EngineHolder` (loaded on first use)."""

    def __init__(self, holder: EngineHolder[Qwen3RerankEngine]) -> None:
        self.holder = holder

    def rank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        instruction: str | None = None,
        return_logits: bool = False,
        truncate: bool = True,
        chunking: Chunking | None = None,
        progress: bool | Progress = False,
        admit: Admit | None = None,
    ) -> Ranking:
        """Score ``texts`` against ``query``; ``Ranking.order`` holds the best ``top_k`` at or above ``threshold``.

        ``truncate=False`` raises :class:`TextsTooLong` (before any forward pass) where a text does not fit
        ``max_length``; by default such texts are cut from their end, as the official code does. ``chunking``
        (default: the engine's options) scores long texts in windows, each text getting its best window's score.
        ``admit(tokens)``,
        when given, is entered once the call is planned and held while it computes (a server's admission control).
        """
        call = self._check(query, texts, top_k, threshold, instruction, return_logits, truncate, chunking)
        if not call.texts:
            return call.ranking([], self.holder.record_nothing())
        engine = self.holder.engine
        start = time.perf_counter()
        plan = call.plan(engine)
        with _admitted(admit, plan.job), progress_callback(progress, len(plan.job.items), "Reranking") as callback:
            run = engine.scheduler.run(plan.job, callback)
        return self._finish(call, engine, plan, run, start)

    async def arank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        instruction: str | None = None,
        return_logits: bool = False,
        truncate: bool = True,
        chunking: Chunking | None = None,
        progress: bool | Progress = False,
        admit: Admit | None = None,
    ) -> Ranking:
        """:meth:`rank` for the event loop: no thread is held while the model computes, and cancelling the task
        drops its packs that have not started."""
        call = self._check(query, texts, top_k, threshold, instruction, return_logits, truncate, chunking)
        if not call.texts:
            return call.ranking([], self.holder.record_nothing())
        engine = await self.holder.engine_async()
        start = time.perf_counter()
        plan = await asyncio.to_thread(call.plan, engine)
        with _admitted(admit, plan.job), progress_callback(progress, len(plan.job.items), "Reranking") as callback:
            run = await engine.scheduler.run_async(plan.job, callback)
        return self._finish(call, engine, plan, run, start)

    @staticmethod
    def _check(
        query: str,
        texts: Sequence[str],
        top_k: int | None,
        threshold: float | None,
        instruction: str | None,
        return_logits: bool,
        truncate: bool,
        chunking: Chunking | None,
    ) -> _RankCall:
        """Every check that needs no model, so that bad input fails before a load."""
        check_query(query)
        check_texts(texts, "documents")
        check_positive_int("top_k", top_k, optional=True)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
            raise InvalidParameter("threshold", f"threshold={threshold!r} is invalid; it must be a number or None.")
        return _RankCall(query, list(texts), top_k, threshold, instruction, return_logits, truncate, chunking)

    def _finish(
        self, call: _RankCall, engine: Qwen3RerankEngine, plan: RerankPlan, run: PackedRun, start: float
    ) -> Ranking:
        result = engine.finish(plan, run, start, return_logits=call.return_logits)
        return call.ranking(result.scores[0], self.holder.record(result.meta))


@dataclass(frozen=True)
class _EmbedCall:
    """A checked embed call: what both :meth:`Embedder.embed` and :meth:`Embedder.aembed` run."""

    texts: list[str]
    choices: dict[str, Any]  # the engine's per-call options (is_query, instruction, dimensions, ...)
    truncate: bool

    def plan(self, engine: Qwen3EmbedEngine) -> EmbedPlan:
        plan = engine.plan(self.texts, **self.choices)
        if not self.truncate and plan.truncated_documents:
            raise TextsTooLong("texts", plan.truncated_documents, len(self.texts))
        return plan


class Embedder:
    """The embed call of every adapter, over its :class:`~.holder.EngineHolder` (loaded on first use)."""

    def __init__(self, holder: EngineHolder[Qwen3EmbedEngine]) -> None:
        self.holder = holder

    def embed(
        self,
        texts: Sequence[str],
        *,
        kind: EmbedKind = "documents",
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        precision: str | None = None,
        ranges: RangesLike | None = None,
        truncate: bool = True,
        progress: bool | Progress = False,
        admit: Admit | None = None,
    ) -> EmbedResult:
        """Vectors ``[N, d]`` in input order: ``kind="queries"`` adds the query instruction, ``"documents"`` none.

        Options left at ``None`` take the engine's; ``truncate=False`` raises :class:`TextsTooLong` (before any
        forward pass) where a text does not fit ``max_length``; ``admit`` is as for :meth:`Reranker.rank`. Empty
        ``texts`` return ``[0, d]`` without loading.
        """
        call = self._check(texts, kind, instruction, dimensions, normalize, precision, ranges, truncate)
        if not call.texts:
            return self._nothing(dimensions)
        engine = self.holder.engine
        start = time.perf_counter()
        plan = call.plan(engine)
        with _admitted(admit, plan.job), progress_callback(progress, len(plan.job.items), "Embedding") as callback:
            run = engine.scheduler.run(plan.job, callback)
        return self._finish(engine, plan, run, start)

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        kind: EmbedKind = "documents",
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        precision: str | None = None,
        ranges: RangesLike | None = None,
        truncate: bool = True,
        progress: bool | Progress = False,
        admit: Admit | None = None,
    ) -> EmbedResult:
        """:meth:`embed` for the event loop: no thread is held while the model computes, and cancelling the task
        drops its packs that have not started."""
        call = self._check(texts, kind, instruction, dimensions, normalize, precision, ranges, truncate)
        if not call.texts:
            return self._nothing(dimensions)
        engine = await self.holder.engine_async()
        start = time.perf_counter()
        plan = await asyncio.to_thread(call.plan, engine)
        with _admitted(admit, plan.job), progress_callback(progress, len(plan.job.items), "Embedding") as callback:
            run = await engine.scheduler.run_async(plan.job, callback)
        return self._finish(engine, plan, run, start)

    @staticmethod
    def _check(
        texts: Sequence[str],
        kind: str,
        instruction: str | None,
        dimensions: int | None,
        normalize: bool | None,
        precision: str | None,
        ranges: RangesLike | None,
        truncate: bool,
    ) -> _EmbedCall:
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, got a single string; wrap it in a list.")
        check_texts(texts, "texts")
        if kind not in EMBED_KINDS:
            raise InvalidParameter(
                "kind",
                f"kind={kind!r} is not supported; use 'documents' (embedded as they are) or 'queries' (with the "
                "query instruction).",
            )
        choices = dict(
            is_query=kind == "queries",
            instruction=instruction,
            dimensions=dimensions,
            normalize=normalize,
            precision=precision,
            ranges=ranges,
        )
        return _EmbedCall(list(texts), choices, truncate)

    def _nothing(self, dimensions: int | None) -> EmbedResult:
        width = dimensions or self.holder.options.dimensions or 0  # the hidden size is unknown before a load
        return EmbedResult(np.zeros((0, width), np.float32), self.holder.record_nothing())

    def _finish(self, engine: Qwen3EmbedEngine, plan: EmbedPlan, run: PackedRun, start: float) -> EmbedResult:
        result = engine.finish(plan, run, start)
        self.holder.record(result.meta)
        return result


async def score_requests_async(
    engine: Qwen3RerankEngine,
    requests: Sequence[tuple[str, Sequence[str]]],
    *,
    instruction: str | None = None,
    return_logits: bool = False,
    progress: bool | Progress = False,
) -> BatchScoreResult:
    """:meth:`Qwen3RerankEngine.score_batch_with_meta` for the event loop, on an engine without a holder."""
    start = time.perf_counter()
    plan = await asyncio.to_thread(engine.plan, requests, instruction)
    with progress_callback(progress, len(plan.job.items), "Reranking") as callback:
        run = await engine.scheduler.run_async(plan.job, callback)
    return engine.finish(plan, run, start, return_logits=return_logits)


async def _score_with_meta_async(
    engine: Qwen3RerankEngine, query: str, documents: Sequence[str], **options: Any
) -> ScoreResult:
    result = await score_requests_async(engine, [(query, documents)], **options)
    return ScoreResult(result.scores[0], result.meta)


async def _score_async(engine: Qwen3RerankEngine, query: str, documents: Sequence[str], **options: Any) -> list[float]:
    return (await _score_with_meta_async(engine, query, documents, **options)).scores


def _score_batch(engine: Qwen3RerankEngine, requests: Sequence[tuple[str, Sequence[str]]], **options: Any) -> Any:
    return engine.score_batch_with_meta(requests, **options).scores


_ASYNC = "Reranker(holder).arank(...) or score_requests_async(engine, ...)"
# Qwen3RerankEngine's 0.1.0 method names: (what to use instead, what the name still does)
RENAMED_ENGINE_METHODS: dict[str, tuple[str, Callable[..., Any]]] = {
    "score_batch": ("score_batch_with_meta(...).scores", _score_batch),
    "score_async": ("Reranker(holder).arank(...) or score_requests_async(engine, ...)", _score_async),
    "score_with_meta_async": (
        "Reranker(holder).arank(...) or score_requests_async(engine, ...)",
        _score_with_meta_async,
    ),
    "score_batch_with_meta_async": ("score_requests_async(engine, requests)", score_requests_async),
}
