"""Memory: activation memory is set by the pack budget, not by the number of documents.

Scores 1 query + N documents on a random reranker of the 0.6B geometry and prints, per budget and N, the peak
resident set above the loaded weights, next to a budget-determined bound.

    python bench/memory.py --layers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

from common import (
    WORKLOADS,
    format_table,
    make_workload,
    peak_rss_mb,
    random_checkpoint,
    release_memory,
    reset_peak_rss,
    rss_mb,
)
from qwen3_rag_components import Qwen3RerankEngine

FIXED_OVERHEAD_MB = 200


def activation_bound_mb(engine: Qwen3RerankEngine, max_tokens: int) -> float:
    """A budget-determined bound: one pack of ``max_tokens`` tokens in fp32 (hidden states, q/k/v, attention output
    and the MLP's three [T, I] tensors alive at once, twice over for gathers and temporaries) plus a fixed
    ``FIXED_OVERHEAD_MB`` for what does not scale with the budget (allocator caches, tokenizer buffers, the outputs)."""
    config = engine.model.config
    per_token = 6 * config.hidden_size + 2 * config.num_attention_heads * config.head_dim
    per_token += 2 * config.num_key_value_heads * config.head_dim + 3 * config.intermediate_size
    return 2 * 4 * per_token * max_tokens / 2**20 + FIXED_OVERHEAD_MB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--documents", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--budgets", type=int, nargs="+", default=[2048, 8192])
    args = parser.parse_args(argv)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    path = random_checkpoint("reranker", args.layers)
    engine = Qwen3RerankEngine.from_pretrained(str(path), device="cpu", local_files_only=True)
    workload = make_workload(dataclasses.replace(WORKLOADS["R"], documents=max(args.documents), seed=5))
    engine.score(workload.query, workload.documents[:4])  # warm-up
    release_memory()
    weights = rss_mb()
    print(f"random {args.layers}-layer 0.6B-geometry reranker; resident after loading and warm-up: {weights:.0f} MB")
    rows = []
    for budget in args.budgets:
        tuned = engine.with_options(max_tokens_per_pack=budget)
        for count in args.documents:
            release_memory()
            reset_peak_rss()
            meta = tuned.score_with_meta(workload.query, workload.documents[:count]).meta
            peak = peak_rss_mb()
            rows.append(
                [
                    str(budget),
                    str(count),
                    str(meta.packs),
                    str(meta.tokens_computed),
                    f"{peak:.0f}",
                    f"{peak - weights:.0f}",
                    f"{activation_bound_mb(engine, budget):.0f}",
                ]
            )
    headers = ["budget", "documents", "packs", "tokens", "peak RSS (MB)", "peak − loaded (MB)", "bound (MB)"]
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
