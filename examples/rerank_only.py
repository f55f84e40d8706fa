"""Rerank a list of passages for a query with the packed engine alone (no framework), with what it computed.

    python examples/rerank_only.py [RERANKER]

Model: the argument, else $QWEN3_RERANKER, else Qwen/Qwen3-Reranker-0.6B (hub id or local folder).
"""

from __future__ import annotations

import os
import sys

from qwen3_rag_components import Qwen3RerankEngine

QUERY = "How do I make sure cleanup code runs even if an exception is raised?"
PASSAGES = [
    "A try statement's finally clause runs whether or not an exception occurred.",
    "The with statement calls the context manager's __exit__ method even when the block raises.",
    "list.append(x) adds x to the end of the list.",
    "Beijing is the capital of China.",
    "Default parameter values are evaluated once, when the function definition is executed.",
]


def main(argv: list[str]) -> None:
    model = argv[1] if len(argv) > 1 else os.environ.get("QWEN3_RERANKER", "Qwen/Qwen3-Reranker-0.6B")
    engine = Qwen3RerankEngine.from_pretrained(model)  # CUDA/bf16 if available, else CPU/fp32

    result = engine.score_with_meta(QUERY, PASSAGES)  # P(yes) per passage, in input order
    print(QUERY)
    for score, passage in sorted(zip(result.scores, PASSAGES, strict=True), reverse=True):
        print(f"{score:.3f}  {passage}")
    meta = result.meta
    print(
        f"meta: {meta.packs} pack(s), {meta.tokens_computed} tokens computed "
        f"(per-pair: {meta.padding_free_tokens}), {meta.elapsed_ms:.0f} ms on {meta.device}/{meta.dtype}"
    )


if __name__ == "__main__":
    main(sys.argv)
