"""One scheduler per loaded model: concurrent calls share packs, one pack runs at a time, results match sequential
calls, a short call overtakes a long one, cancelling and failing one call leaves the others intact."""

from __future__ import annotations

import asyncio
import platform
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import qwen3_rag_components.engine.forward as forward_module
import qwen3_rag_components.engine.scheduler as scheduler_module
from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine
from qwen3_rag_components.engine.scheduler import Job, PackScheduler, join_workers
from qwen3_rag_components.engine.service import score_requests_async

from .texts import random_documents

TOLERANCE = 1e-5


class ForwardSpy:
    """Wraps the pack forward: records each pack, the most packs that ever ran at once, and can hold packs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.real = forward_module.packed_hidden_states
        self.packs: list[tuple[int, int]] = []  # (readout rows, tokens) per pack, in the order they ran
        self.running = self.most_running = 0
        self.delay = delay
        self.started = threading.Event()  # set when the first pack starts
        self.release = threading.Event()
        self.release.set()
        self.fail_tokens: set[int] = set()  # packs holding any of these tokens raise
        self._lock = threading.Lock()
        monkeypatch.setattr(forward_module, "packed_hidden_states", self)

    def hold(self) -> None:
        """The next pack blocks (after setting ``started``) until :meth:`go`."""
        self.release.clear()

    def go(self) -> None:
        self.release.set()

    def __call__(self, model, inputs, workspace=None):
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.packs.append((len(inputs.readout), len(inputs.token_ids)))
        try:
            self.started.set()
            assert self.release.wait(timeout=60), "a held pack was never released"
            time.sleep(self.delay)
            if self.fail_tokens.intersection(inputs.token_ids.tolist()):
                raise ValueError("a broken pack")
            return self.real(model, inputs, workspace)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def reranker(reranker_model: str) -> Qwen3RerankEngine:
    """A fresh engine (own scheduler) per test."""
    return Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu")


@pytest.fixture
def embedder(embedder_model: str) -> Qwen3EmbedEngine:
    return Qwen3EmbedEngine.from_pretrained(embedder_model, device="cpu")


async def ascore(engine: Qwen3RerankEngine, query: str, documents: list[str]) -> list[float]:
    return (await score_requests_async(engine, [(query, documents)])).scores[0]


def jobs(count: int, size: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    documents = random_documents(count * size, seed=seed)
    return [(f"query number {k} about {documents[k][:20]}", documents[k * size : (k + 1) * size]) for k in range(count)]


def assert_close(actual: list[list[float]], expected: list[list[float]]) -> None:
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected, strict=True):
        assert a == pytest.approx(b, abs=TOLERANCE)


def test_with_options_copies_share_the_scheduler(reranker, embedder):
    assert reranker.with_options(max_tokens_per_pack=64).scheduler is reranker.scheduler
    assert embedder.with_options(max_length=32).scheduler is embedder.scheduler
    assert isinstance(reranker.scheduler, PackScheduler) and reranker.scheduler is not embedder.scheduler


def test_threads_share_packs_one_at_a_time_and_match_sequential_calls(reranker, embedder, monkeypatch):
    work = jobs(8, 12)
    sequential = [reranker.score(q, d) for q, d in work]
    vectors = embedder.encode([d for _, docs in work for d in docs]).embeddings
    spy = ForwardSpy(monkeypatch)
    spy.hold()
    with ThreadPoolExecutor(max_workers=10) as pool:
        scored = [pool.submit(reranker.score, q, d) for q, d in work]
        embedded = pool.submit(embedder.encode, [d for _, docs in work for d in docs])
        assert spy.started.wait(timeout=30)
        time.sleep(0.3)  # let every thread submit while the first pack is held
        spy.go()
        threaded = [future.result() for future in scored]
        threaded_vectors = embedded.result().embeddings
    assert_close(threaded, sequential)
    assert np.abs(threaded_vectors - vectors).max() <= TOLERANCE
    assert spy.most_running == 1  # one pack at a time on the device, across both models
    reranker_packs = [rows for rows, _ in spy.packs if rows != 96]  # the embedder's one pack holds all 96 texts
    assert len(reranker_packs) < len(work)  # calls that arrived together were packed together
    assert max(tokens for _, tokens in spy.packs) <= reranker.options.max_tokens_per_pack


def test_async_tasks_match_sequential_calls_and_share_packs(reranker, monkeypatch):
    work = jobs(8, 10, seed=1)
    sequential = [reranker.score(q, d) for q, d in work]
    spy = ForwardSpy(monkeypatch)

    async def main() -> list[list[float]]:
        # One executor thread in all: a call that held a thread while it waits would block the others here.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        spy.hold()
        tasks = [asyncio.create_task(ascore(reranker, q, d)) for q, d in work]
        while reranker.scheduler._arrivals < len(work):  # every call reaches the queue while the first pack is held
            await asyncio.sleep(0.01)
        spy.go()
        return await asyncio.gather(*tasks)

    assert_close(asyncio.run(main()), sequential)
    assert len(spy.packs) < len(work)


def test_meta_is_per_call(reranker, monkeypatch):
    (first, second) = jobs(2, 6, seed=2)
    alone = reranker.score_with_meta(*first).meta
    spy = ForwardSpy(monkeypatch)
    spy.hold()
    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(reranker.score_with_meta, *first)
        assert spy.started.wait(timeout=30)
        b = pool.submit(reranker.score_with_meta, *second)
        time.sleep(0.2)
        spy.go()
        meta_a, meta_b = a.result().meta, b.result().meta
    assert meta_a.tokens_computed == alone.tokens_computed and meta_a.packs == alone.packs == 1
    assert meta_b.documents == 6 and meta_b.packs == 1
    assert meta_b.queued_ms >= 150  # it waited for the held pack of the first call
    assert meta_a.compute_ms >= 150 and meta_a.queued_ms < meta_a.compute_ms
    for meta in (meta_a, meta_b):
        assert meta.elapsed_ms >= meta.queued_ms + meta.compute_ms - 1


def test_the_worker_trims_the_heap_after_each_cpu_pack(reranker, monkeypatch):
    """The kernels' outputs of a CPU pack go back to the kernel before the next pack starts (``forward.trim_heap``),
    so the heap does not fault more and more of its free pages in over many packs."""
    if platform.libc_ver()[0] == "glibc":
        assert forward_module._malloc_trim() is not None  # the trim is real where glibc is the C library
    spy = ForwardSpy(monkeypatch)
    packs_before_trim: list[int] = []
    monkeypatch.setattr(forward_module, "trim_heap", lambda: packs_before_trim.append(len(spy.packs)))
    query, documents = jobs(1, 12, seed=6)[0]
    reranker.with_options(max_docs_per_pack=4).score(query, documents)
    join_workers(timeout=30)  # the worker trims after handing over the last pack's rows
    assert packs_before_trim == [1, 2, 3]


def test_a_short_call_overtakes_a_long_one(reranker, monkeypatch):
    long_query, long_documents = jobs(1, 60, seed=3)[0]
    short_query, short_documents = jobs(1, 3, seed=4)[0]
    engine = reranker.with_options(max_docs_per_pack=4)  # the long call needs 15 packs
    expected = engine.score(short_query, short_documents)
    spy = ForwardSpy(monkeypatch)
    spy.hold()
    with ThreadPoolExecutor(max_workers=2) as pool:
        long_call = pool.submit(engine.score, long_query, long_documents)
        assert spy.started.wait(timeout=30)
        short_call = pool.submit(engine.score, short_query, short_documents)
        time.sleep(0.2)
        spy.go()
        assert short_call.result() == pytest.approx(expected, abs=TOLERANCE)
        packs_when_short_done = len(spy.packs)
        long_call.result()
    assert packs_when_short_done <= 3  # the held pack, the one the short call rode in, perhaps one started since
    assert spy.packs[1][0] == len(short_documents)  # that pack held the short call's items only: no long-call filler
    assert len(spy.packs) == 16  # 15 of the long call, 1 of the short one


def test_new_calls_share_their_first_pack_with_each_other_only(reranker, monkeypatch):
    long_query, long_documents = jobs(1, 40, seed=3)[0]
    shorts = jobs(2, 3, seed=5)
    engine = reranker.with_options(max_docs_per_pack=8)  # the long call needs 5 packs
    expected = [engine.score(query, documents) for query, documents in shorts]
    spy = ForwardSpy(monkeypatch)
    spy.hold()
    with ThreadPoolExecutor(max_workers=3) as pool:
        long_call = pool.submit(engine.score, long_query, long_documents)
        assert spy.started.wait(timeout=30)
        short_calls = [pool.submit(engine.score, query, documents) for query, documents in shorts]
        deadline = time.monotonic() + 30
        while len(engine.scheduler._calls) < 3 and time.monotonic() < deadline:  # both short calls queued
            time.sleep(0.01)
        spy.go()
        assert_close([call.result() for call in short_calls], expected)
        long_call.result()
    assert [rows for rows, _ in spy.packs] == [8, 6, 8, 8, 8, 8]  # the two new calls together, then the long call


def test_a_stream_of_short_calls_does_not_starve_a_long_one(reranker):
    """Packs planned by hand (no worker): a new call arrives at every pack boundary; newcomers-only packs alternate
    with packs that put the newcomer first and fill up with the long call's items."""
    scheduler = PackScheduler(reranker.model)
    scheduler._start_workers = lambda: None  # type: ignore[method-assign]

    def submit(items: int) -> object:
        job = Job([[1, 2, 3]], [0] * items, [[7] * (k + 1) for k in range(items)], max_tokens=10_000, max_items=8)
        return scheduler._submit(job, lambda event: None)

    long_call = submit(40)
    plan = [scheduler._next_pack()]
    for _ in range(4):
        submit(3)
        plan.append(scheduler._next_pack())
    rows = [[(call is long_call, count) for call, count in Counter(c for c, _ in pack.rows).items()] for pack in plan]
    assert rows == [[(True, 8)], [(False, 3)], [(False, 3), (True, 5)], [(False, 3)], [(False, 3), (True, 5)]]


def test_cancelled_task_drops_its_packs_and_leaves_the_others_intact(reranker, monkeypatch):
    long_query, long_documents = jobs(1, 60, seed=5)[0]
    work = jobs(4, 5, seed=6)
    engine = reranker.with_options(max_docs_per_pack=4)
    sequential = [engine.score(q, d) for q, d in work]
    spy = ForwardSpy(monkeypatch)

    async def main() -> list[list[float]]:
        spy.hold()
        doomed = asyncio.create_task(ascore(engine, long_query, long_documents))
        while not spy.started.is_set():
            await asyncio.sleep(0.01)
        others = [asyncio.create_task(ascore(engine, q, d)) for q, d in work]
        await asyncio.sleep(0.2)
        doomed.cancel()
        spy.go()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await asyncio.gather(*others)

    assert_close(asyncio.run(main()), sequential)
    assert len(spy.packs) <= 1 + 5 + 1  # the held pack, the other calls' 20 documents, at most one more in flight
    assert not engine.scheduler._calls


def test_an_error_in_a_shared_pack_fails_only_its_own_call(reranker, monkeypatch):
    work = jobs(2, 4, seed=7)
    sequential = [reranker.score(q, d) for q, d in work]
    spy = ForwardSpy(monkeypatch)
    spy.fail_tokens = set(reranker.text.plain_ids([" \u2603"])[0])  # a pack with a snowman fails (the rest is ASCII)
    spy.hold()
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(reranker.score, *work[0])
        assert spy.started.wait(timeout=30)
        broken = pool.submit(reranker.score, "broken", ["a ☃", "b"])
        second = pool.submit(reranker.score, *work[1])
        time.sleep(0.2)
        spy.go()
        with pytest.raises(ValueError, match="a broken pack"):
            broken.result()
        assert_close([first.result(), second.result()], sequential)
    assert not reranker.scheduler._calls
    rows = [rows for rows, _ in spy.packs]
    assert rows[:2] == [4, 6] and sorted(rows[2:]) == [2, 4]  # first; broken + second fail; then each alone, in
    # their order of arrival (their threads tokenize at the same time, so either may arrive first)


def test_out_of_memory_in_a_shared_pack_halves_the_budget_and_loses_nothing(reranker, monkeypatch):
    work = jobs(4, 8, seed=8)
    sequential = [reranker.score(q, d) for q, d in work]
    real = forward_module.packed_hidden_states
    sizes: list[int] = []

    def forward(model, inputs, workspace=None):
        sizes.append(len(inputs.token_ids))
        if len(inputs.token_ids) > 400:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return real(model, inputs, workspace)

    monkeypatch.setattr(forward_module, "packed_hidden_states", forward)
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda job: reranker.score(*job), work))
    assert_close(threaded, sequential)
    assert max(sizes) > 400 and all(size <= 400 for size in sizes[-3:])


def test_the_event_loop_keeps_its_pace(reranker, monkeypatch):
    work = jobs(16, 6, seed=9)
    engine = reranker.with_options(max_docs_per_pack=8)
    ForwardSpy(monkeypatch, delay=0.05)  # slow packs: a blocked loop would show as a long gap between ticks

    async def main() -> tuple[float, float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        start = time.perf_counter()
        await asyncio.gather(*(ascore(engine, q, d) for q, d in work))
        total = time.perf_counter() - start
        done.set()
        await tick
        return max(gaps), total

    longest_gap, total = asyncio.run(main())
    assert total >= 0.5  # 12+ packs of 50 ms each
    assert longest_gap < 0.2 < total / 2


def test_two_packs_are_in_flight_per_gpu_and_one_per_cpu():
    """On CUDA one worker plans the next pack while the other's kernels run; on a CPU one forward takes every core."""
    assert scheduler_module._device_slot(torch.device("cuda:7"))[1] == 2
    assert scheduler_module._device_slot(torch.device("cpu"))[1] == 1
