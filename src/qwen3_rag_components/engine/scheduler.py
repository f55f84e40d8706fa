"""One scheduler per loaded model: every call's items go through one queue and one pack at a time per device.

Concurrent callers (threads, async tasks, several components sharing an engine) submit *jobs*: a call's prefixes and
items, already tokenized and checked. A worker thread builds each pack from the queued items of every active call
under the token budget, runs its forward, and hands each call its rows. So peak memory is one pack's whatever the
number of callers, and small concurrent calls fill one forward instead of running several half-empty ones.

Order of service: at every pack boundary the active calls are ordered by the pack that last served them (never
served first), then by arrival; the pack takes items from the first call, then fills up from the next ones. A pack
that opens newly arrived calls fills up only from other new calls, so a short call that arrives during a long one
rides in the very next pack, and that pack is as short as the new calls: it waits for the running pack and its own
short one, not for a full pack of the long call's items. Such packs never come twice in a row (the next pack fills up
from older calls again), so a stream of short calls cannot starve a long one. Calls of equal standing are served
first come, first served. Within a call, items go in (group, length) order, so a call alone gets exactly the packs
:func:`~.packing.plan_packs` plans.

The module is longer than the others (~350 lines) on purpose: the queue, the worker, the device gate and the
out-of-memory back-off share one lock and one set of invariants, which read best in one place.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import forward
from .forward import PackedRun
from .meta import Progress

logger = logging.getLogger(__name__)

WORKER_THREAD_PREFIX = "qwen3-rag-packs-"  # a worker thread's name: this prefix, then its device


def join_workers(timeout: float | None = None) -> None:
    """Wait for every engine's pack workers to leave. A worker outlives its callers' last pack by a moment (it hands
    the rows over, then trims the heap and drops its workspace); with no call queued, none starts again."""
    for thread in threading.enumerate():
        if thread.name.startswith(WORKER_THREAD_PREFIX):
            thread.join(timeout)


_device_slots: dict[str, threading.BoundedSemaphore] = {}
_device_packs: dict[str, int] = {}
_slots_lock = threading.Lock()


def set_concurrent_packs(device: str | torch.device, packs: int) -> None:
    """How many packs may run at once on ``device`` across all loaded models (default 1; 2 on CUDA).

    One at a time is right on a CPU, where one forward already uses every core. On CUDA the default is 2: while one
    worker waits for its pack's kernels, the other plans the next pack and queues its kernels behind them, so the GPU
    does not wait for the host (at the cost of a second pack's activation memory).
    """
    if isinstance(packs, bool) or not isinstance(packs, int) or packs < 1:
        raise ValueError(f"packs={packs!r} is invalid; it must be a positive int.")
    with _slots_lock:
        _device_packs[str(torch.device(device))] = packs
        _device_slots.pop(str(torch.device(device)), None)  # schedulers pick up the new gate at their next pack


def _device_slot(device: torch.device) -> tuple[threading.BoundedSemaphore, int]:
    with _slots_lock:
        key = str(device)
        packs = _device_packs.get(key, 2 if device.type == "cuda" else 1)
        if key not in _device_slots:
            _device_slots[key] = threading.BoundedSemaphore(packs)
        return _device_slots[key], packs


@dataclass(frozen=True)
class Job:
    """One call's work: as :func:`~.packing.plan_packs` takes it, plus the budgets of the calling engine."""

    prefixes: Sequence[Sequence[int]]  # token ids of each group's shared prefix ([] for embeddings)
    item_groups: Sequence[int]  # group of each item
    items: Sequence[Sequence[int]]  # token ids of each item (non-empty; int32 arrays keep a queued call small)
    max_tokens: int
    max_items: int | None

    @property
    def tokens(self) -> int:
        """Tokens this job puts through the model, each group's prefix counted once (packing may repeat it)."""
        return sum(len(item) for item in self.items) + sum(len(prefix) for prefix in self.prefixes)


@dataclass(eq=False)
class _Call:
    job: Job
    arrival: int
    notify: Callable[[str], None]
    hidden: torch.Tensor  # [N, C] readouts, filled pack by pack
    pending: deque[int]  # items not yet in a pack, in (group, length) order
    max_tokens: int
    submitted: float = field(default_factory=time.perf_counter)
    last_served: int = -1
    in_flight: int = 0
    done: int = 0
    packs: int = 0
    tokens: int = 0
    compute_s: float = 0.0
    peak_memory_bytes: int | None = None
    isolate: bool = False  # run alone: a mixed pack with this call failed for a reason other than memory
    warned: bool = False
    cancelled: bool = False
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return not self.pending and not self.in_flight


@dataclass
class _Pack:
    calls: list[_Call] = field(default_factory=list)
    segments: list[tuple[Sequence[int], list[Sequence[int]]]] = field(default_factory=list)
    rows: list[tuple[_Call, int]] = field(default_factory=list)  # (call, item) of each readout row, in order
    num_tokens: int = 0
    tokens_of: dict[_Call, int] = field(default_factory=dict)


class PackScheduler:
    """The queue and worker(s) of one loaded model (shared by its ``with_options`` copies)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device: torch.device = model.embed_tokens.weight.device
        self._lock = threading.Lock()
        self._calls: list[_Call] = []
        self._workers = 0
        self._arrivals = 0
        self._packs_run = 0
        self._older_calls_waited = False  # the last pack left out older calls' items to keep new calls' pack short
        forward.compile_steps(model)  # bf16/fp16: at load, not in the first caller's time

    # --- callers ----------------------------------------------------------------------------------------------

    def run(self, job: Job, progress: Progress | None = None) -> PackedRun:
        """Submit ``job`` and block until its items are computed; ``progress(done, total)`` runs in this thread."""
        events: queue.SimpleQueue[str] = queue.SimpleQueue()
        call = self._submit(job, events.put)
        try:
            while self._wait_step(call, events.get(), progress):
                pass
        except BaseException:
            self.cancel(call)
            raise
        return self._result(call)

    async def run_async(self, job: Job, progress: Progress | None = None) -> PackedRun:
        """:meth:`run` for the event loop: awaits the worker without holding a thread; cancelling drops the rest."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[str] = asyncio.Queue()

        def notify(event: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        call = self._submit(job, notify)
        try:
            while self._wait_step(call, await events.get(), progress):
                pass
        except BaseException:
            self.cancel(call)
            raise
        return self._result(call)

    @property
    def packs_run(self) -> int:
        """Packs this model has started since it was loaded (a cancelled call starts no more of its own)."""
        return self._packs_run

    def cancel(self, call: _Call) -> None:
        """Drop the call's items that no pack has taken yet; a pack already running finishes for the others."""
        with self._lock:
            call.cancelled = True
            call.pending.clear()
            if call in self._calls:
                self._calls.remove(call)

    def _submit(self, job: Job, notify: Callable[[str], None]) -> _Call:
        lengths = [len(item) for item in job.items]
        order = sorted(range(len(job.items)), key=lambda i: (job.item_groups[i], lengths[i], i))
        weight = self.model.embed_tokens.weight
        hidden = torch.empty(len(job.items), weight.shape[1], dtype=weight.dtype, device=self.device)  # [N, C]
        with self._lock:
            call = _Call(job, self._arrivals, notify, hidden, deque(order), job.max_tokens)
            self._arrivals += 1
            if order:
                self._calls.append(call)
                self._start_workers()
        if not order:
            notify("done")
        return call

    @staticmethod
    def _wait_step(call: _Call, event: str, progress: Progress | None) -> bool:
        """Handle one worker event; ``False`` once the call is complete."""
        if event in ("progress", "done") and progress is not None and call.done:
            progress(call.done, len(call.job.items))
        if call.error is not None:
            raise call.error
        return event != "done"

    @staticmethod
    def _result(call: _Call) -> PackedRun:
        total_s = time.perf_counter() - call.submitted
        return PackedRun(
            call.hidden,
            call.packs,
            call.tokens,
            call.compute_s,
            queued_s=total_s - call.compute_s,
            peak_memory_bytes=call.peak_memory_bytes,
        )

    # --- worker -----------------------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        """Called under the lock: enough workers for the device's concurrent packs, none when idle.

        Workers are not daemon threads: a worker still finishing its last pack (or just leaving) when the program ends
        is waited for. Killed in torch code at interpreter exit, it would abort the process ("terminate called
        without an active exception"); it never outlives the work queued, so the wait is at most one pack.
        """
        _, packs = _device_slot(self.device)
        while self._workers < packs:
            self._workers += 1
            threading.Thread(target=self._work, name=f"{WORKER_THREAD_PREFIX}{self.device}").start()

    def _work(self) -> None:
        workspace = forward.Workspace()  # this worker's pack buffers, reused while calls are queued
        while True:
            slot, _ = _device_slot(self.device)
            with slot:
                with self._lock:
                    pack = self._next_pack()
                    if pack is None:
                        self._workers -= 1
                        return
                self._run(pack, workspace)
                if self.device.type == "cpu":
                    forward.trim_heap()  # the kernels' outputs of this pack; see trim_heap

    def _next_pack(self) -> _Pack | None:
        """Called under the lock: the next pack, its items taken off their calls' queues."""
        calls = sorted((c for c in self._calls if c.pending), key=lambda c: (c.last_served, c.arrival))
        if not calls:
            return None
        pack = _Pack()
        limit, item_limit = calls[0].max_tokens, calls[0].job.max_items
        new_only = calls[0].last_served < 0 and not self._older_calls_waited  # never twice in a row
        self._older_calls_waited = False
        for call in calls:
            if pack.calls and (call.isolate or pack.calls[0].isolate):
                break
            if new_only and call.last_served >= 0:
                self._older_calls_waited = True  # new calls' pack stays as short as they are, once
                break
            limit = min(limit, call.max_tokens)
            if call.job.max_items is not None:
                item_limit = min(item_limit or call.job.max_items, call.job.max_items)
            if not self._take(pack, call, limit, item_limit):
                break
        self._packs_run += 1
        for call in pack.calls:
            call.last_served = self._packs_run
        return pack

    @staticmethod
    def _take(pack: _Pack, call: _Call, limit: int, item_limit: int | None) -> bool:
        """Move ``call``'s next items into ``pack`` while they fit; ``False`` once the pack is full."""
        job, group = call.job, None
        while call.pending:
            item = call.pending[0]
            opens_group = group != job.item_groups[item]
            cost = len(job.items[item]) + (len(job.prefixes[job.item_groups[item]]) if opens_group else 0)
            full = item_limit is not None and len(pack.rows) >= item_limit
            if pack.rows and (full or pack.num_tokens + cost > limit):
                return False
            call.pending.popleft()
            if call not in pack.tokens_of:
                pack.calls.append(call)
                pack.tokens_of[call] = 0
            if opens_group:
                group = job.item_groups[item]
                pack.segments.append((job.prefixes[group], []))
            pack.segments[-1][1].append(job.items[item])
            pack.rows.append((call, item))
            pack.num_tokens += cost
            pack.tokens_of[call] += cost
            call.in_flight += 1
        return True

    def _run(self, pack: _Pack, workspace: forward.Workspace) -> None:
        start = time.perf_counter()
        cuda, peak = self.device.type == "cuda", 0
        try:
            if cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            inputs = forward.build_pack_inputs(pack.segments, self.device, forward.chunk_tokens(self.model))
            hidden = forward.packed_hidden_states(self.model, inputs, workspace)  # [R, C] in row order
            if cuda:  # wait for this pack's kernels only (not those another worker queued after them)
                finished_event = torch.cuda.Event()
                finished_event.record(torch.cuda.current_stream(self.device))
                finished_event.synchronize()
                peak = torch.cuda.max_memory_allocated(self.device)
        except Exception as error:
            workspace.release()  # an out-of-memory retry plans smaller packs: their buffers should not stack on it
            self._retry_or_fail(pack, error)
            return
        elapsed = time.perf_counter() - start
        finished: list[_Call] = []
        with self._lock:
            for row, (call, item) in enumerate(pack.rows):
                if not call.cancelled:
                    call.hidden[item] = hidden[row]
                call.in_flight -= 1
                call.done += 1
            for call in pack.calls:
                call.packs += 1
                call.tokens += pack.tokens_of[call]
                call.compute_s += elapsed
                if cuda:
                    call.peak_memory_bytes = max(call.peak_memory_bytes or 0, peak)
                if call.finished and call in self._calls:
                    self._calls.remove(call)
                    finished.append(call)
        for call in pack.calls:
            self._notify(call, "done" if call in finished else "progress")

    def _retry_or_fail(self, pack: _Pack, error: Exception) -> None:
        """Out of memory: halve the budget of the pack's calls and queue its items again (down to one item per pack).
        Another error in a pack of several calls: queue each call's items again, to run alone. Otherwise the one
        call in the pack fails; no other caller's items are lost."""
        failed: list[_Call] = []
        with self._lock:
            for call in pack.calls:
                taken = [item for c, item in pack.rows if c is call]
                call.in_flight -= len(taken)
                if not call.cancelled:
                    call.pending.extendleft(reversed(taken))
            if forward.is_out_of_memory(error) and len(pack.rows) > 1:
                budget = max(1, pack.num_tokens // 2)
                for call in pack.calls:
                    call.max_tokens = min(call.max_tokens, budget)
                    if not call.warned:
                        call.warned = True
                        logger.warning(
                            "A pack of %d tokens ran out of memory on %s; continuing with max_tokens_per_pack=%d for "
                            "the rest of this call (lower max_tokens_per_pack to avoid the retry).",
                            pack.num_tokens,
                            self.device,
                            budget,
                        )
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            elif len(pack.calls) > 1:
                for call in pack.calls:
                    call.isolate = True
            elif not pack.calls[0].cancelled:
                call = pack.calls[0]
                if forward.is_out_of_memory(error):
                    error.add_note(
                        f"One item of {pack.num_tokens} tokens (its prefix included) does not fit in memory on "
                        f"{self.device}; lower max_length, or use a device with more memory."
                    )
                call.error = error
                call.pending.clear()
                if call in self._calls:
                    self._calls.remove(call)
                failed.append(call)
        for call in failed:
            self._notify(call, "error")

    def _notify(self, call: _Call, event: str) -> None:
        """Tell the caller; one that can no longer hear (its event loop closed) is cancelled, and the worker goes on."""
        if call.cancelled:
            return
        try:
            call.notify(event)
        except Exception:
            self.cancel(call)
