"""The packed-inference engine: torch and transformers only (no Haystack, no LangChain)."""

from __future__ import annotations

from .cache import clear_engine_cache, get_engine
from .embed import EmbedResult, Qwen3EmbedEngine
from .loading import RunMeta
from .rerank import BatchScoreResult, Qwen3RerankEngine, ScoreResult

__all__ = [
    "BatchScoreResult",
    "EmbedResult",
    "Qwen3EmbedEngine",
    "Qwen3RerankEngine",
    "RunMeta",
    "ScoreResult",
    "clear_engine_cache",
    "get_engine",
]
