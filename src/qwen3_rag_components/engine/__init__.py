"""The packed-inference engine: torch and transformers only (no Haystack, no LangChain).

It reads packing (:mod:`.packing`, :mod:`.scheduler`) -> attention (:mod:`.attention`) -> forward (:mod:`.forward`)
-> heads (:mod:`.heads`); :mod:`.options` declares every option once, :mod:`.holder` is what the adapters keep.
"""

from __future__ import annotations

from .cache import clear_engine_cache, get_engine, shared_engine
from .embed import EmbedResult, Qwen3EmbedEngine
from .holder import EngineHolder
from .meta import RunMeta
from .options import EmbedOptions, LoadSpec, RerankOptions
from .rerank import BatchScoreResult, Qwen3RerankEngine, ScoreResult

__all__ = [
    "BatchScoreResult",
    "EmbedOptions",
    "EmbedResult",
    "EngineHolder",
    "LoadSpec",
    "Qwen3EmbedEngine",
    "Qwen3RerankEngine",
    "RerankOptions",
    "RunMeta",
    "ScoreResult",
    "clear_engine_cache",
    "get_engine",
    "shared_engine",
]
