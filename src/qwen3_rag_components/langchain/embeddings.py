"""Qwen3Embeddings: LangChain ``Embeddings`` backed by Qwen3-Embedding on the packed engine."""

from __future__ import annotations

import warnings
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import model_validator

from ..adapter_fields import EmbedFields
from ..engine.service import Embedder


class Qwen3Embeddings(EmbedFields, Embeddings):
    """Embeds documents and queries with a Qwen3-Embedding checkpoint, exactly as the official code does.

    Documents are embedded as they are; queries as ``"Instruct: {instruction}\\nQuery:{query}"``. Vectors are
    the final hidden state at the appended ``<|endoftext|>``, cut to ``dimensions`` (MRL), then L2-normalised. The
    model is loaded on first use and shared with every other component (LangChain or Haystack) that asks for the same
    checkpoint, device and dtype.

    Example:
        .. code-block:: python

            from langchain_core.vectorstores import InMemoryVectorStore
            from qwen3_rag_components.langchain import Qwen3Embeddings

            embeddings = Qwen3Embeddings(model="Qwen/Qwen3-Embedding-0.6B", dimensions=256)
            store = InMemoryVectorStore.from_texts(["Beijing is the capital of China.", "Gravity."], embeddings)
            store.similarity_search("What is the capital of China?", k=1)

            embeddings.embed_query("What is the capital of China?")  # 256 floats, unit length
    """

    @model_validator(mode="before")
    @classmethod
    def _renamed_query_instruction(cls, data: Any) -> Any:
        if isinstance(data, dict) and "query_instruction" in data:
            warnings.warn(
                "Qwen3Embeddings(query_instruction=...) is now instruction=... (the name every adapter uses); "
                "query_instruction will be removed in a later release.",
                DeprecationWarning,
                stacklevel=4,
            )
            data = {("instruction" if key == "query_instruction" else key): value for key, value in data.items()}
        return data

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in input order (documents get no instruction)."""
        _check_texts(texts)
        return Embedder(self.holder).embed(texts, progress=self.show_progress).embeddings.tolist()

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query, formatted with ``instruction``."""
        _check_query(text)
        return Embedder(self.holder).embed([text], kind="queries").embeddings[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`embed_documents`, awaiting the model's shared scheduler (no thread held while it computes)."""
        _check_texts(texts)
        return (await Embedder(self.holder).aembed(texts, progress=self.show_progress)).embeddings.tolist()

    async def aembed_query(self, text: str) -> list[float]:
        """Like :meth:`embed_query`, awaiting the model's shared scheduler (no thread held while it computes)."""
        _check_query(text)
        return (await Embedder(self.holder).aembed([text], kind="queries")).embeddings[0].tolist()


def _check_texts(texts: list[str]) -> None:
    """Raise on a single string, with LangChain's hint."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got a single string; wrap it in a list, or use embed_query.")


def _check_query(text: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}; use embed_documents for a list.")
