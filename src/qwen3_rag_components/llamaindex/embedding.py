"""Qwen3Embedding: a LlamaIndex ``BaseEmbedding`` backed by Qwen3-Embedding on the packed engine."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import Field, model_validator

from ..adapter_fields import EmbedFields
from ..engine.options import DEFAULT_EMBEDDER
from ..engine.prompts import check_texts
from ..engine.service import Embedder


class Qwen3Embedding(EmbedFields, BaseEmbedding):
    """Embeds texts and queries with a Qwen3-Embedding checkpoint, exactly as the official code does.

    Texts (nodes) are embedded as they are; queries as ``"Instruct: {instruction}\\nQuery:{query}"``. Vectors are
    the final hidden state at the appended ``<|endoftext|>``, cut to ``dimensions`` (MRL), then L2-normalised. The
    model is loaded on first use and shared with every other adapter (LlamaIndex, LangChain or Haystack) that asks
    for the same checkpoint, device and dtype.

    Example:
        .. code-block:: python

            from llama_index.core import Document, VectorStoreIndex
            from qwen3_rag_components.llamaindex import Qwen3Embedding

            embed_model = Qwen3Embedding(model="Qwen/Qwen3-Embedding-0.6B", dimensions=256)
            index = VectorStoreIndex.from_documents([Document(text="Beijing is the capital of China.")],
                                                    embed_model=embed_model)
            index.as_retriever(similarity_top_k=1).retrieve("What is the capital of China?")

            embed_model.get_query_embedding("What is the capital of China?")  # 256 floats, unit length
    """

    embed_batch_size: int = Field(default=2048, gt=0, le=2048)
    """Texts per engine call when LlamaIndex embeds in batches (``get_text_embedding_batch``, ``VectorStoreIndex``).
    The engine packs each call under ``max_tokens_per_pack`` itself, so the default is LlamaIndex's largest."""

    @model_validator(mode="before")
    @classmethod
    def _model_name_follows_model(cls, data: Any) -> Any:
        """``model_name`` (BaseEmbedding's label) is set from ``model``; a different one is a mistake, not a choice."""
        if isinstance(data, dict) and "model_name" in data:
            name, model = data["model_name"], data.get("model", DEFAULT_EMBEDDER)
            if name != model:
                raise ValueError(
                    f"model_name={name!r} does not pick the checkpoint of Qwen3Embedding: pass model={name!r} "
                    "(model_name is set from model)."
                )
            data = {key: value for key, value in data.items() if key != "model_name"}
        return data

    @model_validator(mode="after")
    def _set_model_name(self) -> Qwen3Embedding:
        self.model_name = self.model
        return self

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Embedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        """The vector of one query, formatted with ``instruction``."""
        _check_text(query, "query")
        return Embedder(self.holder).embed([query], kind="queries").embeddings[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        _check_text(query, "query")
        return (await Embedder(self.holder).aembed([query], kind="queries")).embeddings[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        """The vector of one text (no instruction)."""
        _check_text(text, "text")
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        _check_text(text, "text")
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in input order, from one engine call."""
        _check_texts(texts)
        return Embedder(self.holder).embed(texts, progress=self.show_progress).embeddings.tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`_get_text_embeddings`, awaiting the model's shared scheduler (no thread held meanwhile)."""
        _check_texts(texts)
        return (await Embedder(self.holder).aembed(texts, progress=self.show_progress)).embeddings.tolist()

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """One vector per text, in input order; ``embed_batch_size`` texts per engine call."""
        _check_texts(texts)  # before LlamaIndex's batching, which would embed a string's characters one by one
        return super().get_text_embedding_batch(texts, show_progress, **kwargs)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """Like :meth:`get_text_embedding_batch`, awaiting the model's shared scheduler."""
        _check_texts(texts)
        return await super().aget_text_embedding_batch(texts, show_progress, **kwargs)


def _check_texts(texts: list[str]) -> None:
    """Raise on anything but a list of strings (before LlamaIndex's batching), with LlamaIndex's hint."""
    if isinstance(texts, str):
        raise TypeError(
            "texts must be a list of strings, got a single string; wrap it in a list, or use get_text_embedding."
        )
    check_texts(texts, "texts")


def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}; use get_text_embedding_batch for a list.")
