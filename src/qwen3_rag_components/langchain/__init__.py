"""LangChain integration: ``Qwen3Reranker`` (a document compressor) and ``Qwen3Embeddings``.

Needs the ``langchain`` extra: ``pip install "qwen3-rag-components[langchain]"``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as error:
    raise ImportError(
        "qwen3_rag_components.langchain needs langchain-core, which is not installed. "
        'Install the extra with: pip install "qwen3-rag-components[langchain]"'
    ) from error

from .embeddings import Qwen3Embeddings
from .reranker import Qwen3Reranker

__all__ = ["Qwen3Embeddings", "Qwen3Reranker"]
