"""Qwen3 reranking and embedding for RAG pipelines, on a packed-inference engine with the official scores."""

from __future__ import annotations

from .engine import (
    BatchScoreResult,
    EmbedOptions,
    EmbedResult,
    LoadSpec,
    Qwen3EmbedEngine,
    Qwen3RerankEngine,
    RerankOptions,
    RunMeta,
    ScoreResult,
    clear_engine_cache,
    get_engine,
)

__all__ = [
    "BatchScoreResult",
    "EmbedOptions",
    "EmbedResult",
    "LoadSpec",
    "Qwen3EmbedEngine",
    "Qwen3RerankEngine",
    "RerankOptions",
    "RunMeta",
    "ScoreResult",
    "clear_engine_cache",
    "get_engine",
]
__version__ = "0.1.0"
