"""Haystack components: Qwen3Ranker, Qwen3TextEmbedder and Qwen3DocumentEmbedder (extra ``haystack``).

Importing this package adds ``qwen3_rag_components.haystack`` (these components' modules only) to Haystack's
deserialization allowlist, so pipelines saved with these components load back with ``Pipeline.loads()`` in this
process. A process that loads such a pipeline without importing this package first must allow the module itself:
``Pipeline.loads(text, allowed_modules=["qwen3_rag_components.haystack"])`` or the environment variable
``HAYSTACK_DESERIALIZATION_ALLOWLIST=qwen3_rag_components.haystack`` (see docs/haystack.md).
"""

from __future__ import annotations

try:
    from haystack.core.serialization import allow_deserialization_module
except ModuleNotFoundError as error:
    if error.name is None or error.name.split(".")[0] != "haystack":
        raise
    raise ImportError(
        'qwen3_rag_components.haystack needs Haystack: pip install "qwen3-rag-components[haystack]"'
    ) from error

from .document_embedder import Qwen3DocumentEmbedder
from .ranker import Qwen3Ranker
from .text_embedder import Qwen3TextEmbedder

allow_deserialization_module(__name__)

__all__ = ["Qwen3DocumentEmbedder", "Qwen3Ranker", "Qwen3TextEmbedder"]
