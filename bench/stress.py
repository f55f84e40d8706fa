"""Stress: many callers share one reranker and one embedder through the model's scheduler.

Part 1 (mixed calls): threads make rerank / embed calls at once; every result must equal the sequential one.
Part 2 (serving): C concurrent callers of P passages each against one reranker: peak RSS above the loaded weights
next to one call alone, total time next to the same calls made one after another, and the latency of a short call
submitted while a long call runs, in units of the long call's mean pack time.

    python bench/stress.py --layers 4
    python bench/stress.py --layers 4 --skip-mixed --callers 16 --passages 150 --long 2000 --short 10
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

from common import (
    WORKLOADS,
    cpu_name,
    make_workload,
    peak_rss_mb,
    random_checkpoint,
    release_memory,
    reset_peak_rss,
    rss_mb,
)
from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the random 0.6B-shaped checkpoints")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=400, help="mixed calls (rerank, embed documents, embed queries)")
    parser.add_argument("--skip-mixed", action="store_true", help="run only the serving part")
    parser.add_argument("--callers", type=int, default=16, help="serving: concurrent callers")
    parser.add_argument("--passages", type=int, default=150, help="serving: passages per caller")
    parser.add_argument("--long", type=int, default=2000, help="serving: passages of the long call")
    parser.add_argument("--short", type=int, default=10, help="serving: passages of each short call")
    parser.add_argument("--samples", type=int, default=12, help="serving: short calls made during the long one")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="of both engines; fp32 (the default) must give sequential results within 1e-5, bf16 is only reported",
    )
    args = parser.parse_args(argv)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    reranker_path = random_checkpoint("reranker", args.layers)
    reranker = Qwen3RerankEngine.from_pretrained(
        str(reranker_path), device="cpu", dtype=args.dtype, local_files_only=True
    )
    print(f"{cpu_name()}, torch threads {torch.get_num_threads()}, {args.layers}-layer 0.6B geometry, {args.dtype}")
    if not args.skip_mixed:
        embedder_path = random_checkpoint("embedder", args.layers)
        embedder = Qwen3EmbedEngine.from_pretrained(
            str(embedder_path), device="cpu", dtype=args.dtype, local_files_only=True
        )
        mixed_calls(reranker, embedder, args.calls, args.threads, exact=args.dtype == "float32")
    serving(reranker, args)


def mixed_calls(reranker: Qwen3RerankEngine, embedder: Qwen3EmbedEngine, count: int, threads: int, exact: bool) -> None:
    """Every threaded result against the sequential one; ``exact`` (fp32): within 1e-5, else exit 1. In bf16 another
    pack layout rounds differently, so the distance is only reported."""
    corpus = make_workload(WORKLOADS["S"]).documents
    rng = random.Random(0)
    calls = [(rng.choice(["rerank", "docs", "queries"]), rng.sample(corpus, rng.randint(1, 12))) for _ in range(count)]

    def run(call: tuple[str, list[str]]) -> np.ndarray:
        kind, texts = call
        if kind == "rerank":
            return np.asarray(reranker.score("what is the special underscore type?", texts))
        return embedder.encode(texts, is_query=kind == "queries").embeddings

    start = time.perf_counter()
    sequential = [run(call) for call in calls]
    sequential_s = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        threaded = list(pool.map(run, calls))
    threaded_s = time.perf_counter() - start
    diffs = [
        float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
        for a, b in zip(sequential, threaded, strict=True)
    ]
    worst, mismatches = max(diffs), sum(d > 1e-5 for d in diffs)
    print(
        f"{count} mixed calls: sequential {sequential_s:.1f} s, {threads} threads {threaded_s:.1f} s; "
        f"max |Δ| {worst:.1e}; results differing by > 1e-5: {mismatches}"
    )
    if mismatches and exact:
        raise SystemExit(1)


def serving(reranker: Qwen3RerankEngine, args: argparse.Namespace) -> None:
    corpus = make_workload(dataclasses.replace(WORKLOADS["R"], documents=max(args.long, args.callers * args.passages)))
    requests = [
        (f"{corpus.query} (caller {k})", corpus.documents[k * args.passages : (k + 1) * args.passages])
        for k in range(args.callers)
    ]
    # "Loaded" means all the weights resident: an fp32 checkpoint is memory-mapped, and the embedding rows of words
    # that only later callers use would otherwise be paged in during the measured calls and counted as theirs.
    with torch.inference_mode():
        for parameter in reranker.model.parameters():
            parameter.sum()
    reranker.score(*requests[0])  # warm-up
    release_memory()
    loaded = rss_mb()

    def peak_above_loaded(fn):
        release_memory()
        reset_peak_rss()
        start = time.perf_counter()
        result = fn()
        return result, time.perf_counter() - start, peak_rss_mb() - loaded

    _, one_s, one_mb = peak_above_loaded(lambda: reranker.score(*requests[0]))
    sequential, sequential_s, sequential_mb = peak_above_loaded(lambda: [reranker.score(*r) for r in requests])
    with ThreadPoolExecutor(max_workers=args.callers) as pool:
        concurrent, concurrent_s, concurrent_mb = peak_above_loaded(
            lambda: list(pool.map(lambda request: reranker.score(*request), requests))
        )
    worst = max(abs(a - b) for s, c in zip(sequential, concurrent, strict=True) for a, b in zip(s, c, strict=True))
    print(
        f"{args.callers} callers x {args.passages} passages, budget {reranker.options.max_tokens_per_pack} tokens; "
        f"loaded {loaded:.0f} MB\n"
        f"  one call alone:  {one_s:6.1f} s, peak above loaded {one_mb:6.0f} MB\n"
        f"  sequential:      {sequential_s:6.1f} s, peak above loaded {sequential_mb:6.0f} MB\n"
        f"  concurrent:      {concurrent_s:6.1f} s, peak above loaded {concurrent_mb:6.0f} MB  "
        f"(x{concurrent_mb / one_mb:.2f} the memory of one call, x{concurrent_mb / sequential_mb:.2f} that of the "
        f"sequential calls, x{concurrent_s / sequential_s:.2f} the sequential time); max |Δ| vs sequential {worst:.1e}"
    )
    short_latency(reranker, corpus.query, corpus.documents, args)


def short_latency(reranker: Qwen3RerankEngine, query: str, documents: list[str], args: argparse.Namespace) -> None:
    """Short calls, one after another, while one long call runs; latency in units of the long call's pack time."""
    short = reranker.score_with_meta("a short query", documents[: args.short]).meta  # alone, for reference
    latencies: list[float] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        long_call = pool.submit(reranker.score_with_meta, query, documents[: args.long])
        time.sleep(1.0)  # the long call is under way
        for k in range(args.samples):
            if long_call.done():
                break
            start = time.perf_counter()
            reranker.score(f"a short query {k}", documents[k * args.short : (k + 1) * args.short])
            latencies.append(time.perf_counter() - start)
            time.sleep(0.2)
        long_meta = long_call.result().meta
    pack_s = long_meta.compute_ms / long_meta.packs / 1000
    p50, p95 = np.percentile(latencies, [50, 95])
    print(
        f"  {args.short}-passage calls during a {args.long}-passage call ({long_meta.packs} packs of "
        f"{pack_s:.2f} s on average, {long_meta.elapsed_ms / 1000:.1f} s in all): {len(latencies)} calls, "
        f"p50 {p50:.2f} s, p95 {p95:.2f} s = x{p50 / pack_s:.2f} / x{p95 / pack_s:.2f} one pack "
        f"(alone: {short.elapsed_ms / 1000:.2f} s)"
    )


if __name__ == "__main__":
    main()
