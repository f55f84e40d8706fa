"""Qwen3 reranking and embedding for RAG pipelines, on a packed-inference engine with the official scores.

The package's public API is the engine's (:mod:`qwen3_rag_components.engine`); the adapters live in
``qwen3_rag_components.haystack``, ``.langchain`` and ``.ray``.
"""

from __future__ import annotations

from .engine import *  # noqa: F403 (the names in engine.__all__)
from .engine import __all__ as __all__

__version__ = "0.1.0"
