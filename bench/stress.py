"""Stress: many threads share one reranker and one embedder; every result must equal the sequential one.

python bench/stress.py --threads 8 --calls 400 --layers 2
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

from common import WORKLOADS, make_workload, random_checkpoint
from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the random 0.6B-shaped checkpoints")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=400, help="mixed calls (rerank, embed documents, embed queries)")
    args = parser.parse_args(argv)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    reranker_path, embedder_path = (
        random_checkpoint("reranker", args.layers),
        random_checkpoint("embedder", args.layers),
    )
    reranker = Qwen3RerankEngine.from_pretrained(str(reranker_path), device="cpu", local_files_only=True)
    embedder = Qwen3EmbedEngine.from_pretrained(str(embedder_path), device="cpu", local_files_only=True)
    corpus = make_workload(WORKLOADS["S"]).documents
    rng = random.Random(0)
    calls = [
        (rng.choice(["rerank", "docs", "queries"]), rng.sample(corpus, rng.randint(1, 12))) for _ in range(args.calls)
    ]

    def run(call: tuple[str, list[str]]) -> np.ndarray:
        kind, texts = call
        if kind == "rerank":
            return np.asarray(reranker.score("what is the special underscore type?", texts))
        return embedder.encode(texts, is_query=kind == "queries").embeddings

    start = time.perf_counter()
    sequential = [run(call) for call in calls]
    sequential_s = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        threaded = list(pool.map(run, calls))
    threaded_s = time.perf_counter() - start
    diffs = [
        float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
        for a, b in zip(sequential, threaded, strict=True)
    ]
    worst, mismatches = max(diffs), sum(d > 1e-5 for d in diffs)
    print(
        f"{args.calls} mixed calls, torch threads {torch.get_num_threads()}: sequential {sequential_s:.1f} s, "
        f"{args.threads} threads {threaded_s:.1f} s; max |Δ| {worst:.1e}; results differing by > 1e-5: {mismatches}"
    )
    if mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
