"""LlamaIndex integration: ``Qwen3Rerank`` (a node postprocessor) and ``Qwen3Embedding`` (a ``BaseEmbedding``).

Needs the ``llamaindex`` extra: ``pip install "qwen3-rag-components[llamaindex]"``.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as error:
    raise ImportError(
        "qwen3_rag_components.llamaindex needs llama-index-core, which is not installed. "
        'Install the extra with: pip install "qwen3-rag-components[llamaindex]"'
    ) from error

from .embedding import Qwen3Embedding
from .rerank import Qwen3Rerank

__all__ = ["Qwen3Embedding", "Qwen3Rerank"]
