"""Qwen3Embedding: a LlamaIndex ``BaseEmbedding`` backed by Qwen3-Embedding on the packed engine."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import Field, model_validator

from ..adapter_fields import EngineFields
from ..engine import EmbedOptions, EmbedResult, EngineHolder, Qwen3EmbedEngine
from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_MAX_LENGTH, DEFAULT_MAX_TOKENS_PER_PACK
from ..engine.prompts import check_texts


class Qwen3Embedding(EngineFields, BaseEmbedding):
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

    engine_class: ClassVar[type] = Qwen3EmbedEngine

    model: str = DEFAULT_EMBEDDER
    """Hub id or local folder of a Qwen3-Embedding checkpoint (0.6B, 4B or 8B; safetensors, no remote code)."""
    instruction: str | None = None
    """Task instruction put before each query; ``None`` uses the official one ("Given a web search query, retrieve
    relevant passages that answer the query"). Texts never get one."""
    dimensions: int | None = None
    """Keep the first ``dimensions`` values of each vector (MRL, 1 to the hidden size), then normalise; ``None``
    keeps the full vector (1024 / 2560 / 4096 for 0.6B / 4B / 8B)."""
    normalize: bool = True
    """L2-normalise the vectors (so that dot product equals cosine similarity)."""
    show_progress: bool = False
    """Show the engine's tqdm progress bar (tokens) while embedding a batch of texts."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Tokens per text including the appended ``<|endoftext|>`` (the official value); longer texts are cut."""
    max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK
    """Token budget of one forward pass: lower it to save memory, raise it for throughput on a large GPU."""
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

    def _engine_options(self) -> EmbedOptions:
        return EmbedOptions(
            instruction=self.instruction,
            dimensions=self.dimensions,
            normalize=self.normalize,
            max_length=self.max_length,
            max_tokens_per_pack=self.max_tokens_per_pack,
        )

    def _get_query_embedding(self, query: str) -> list[float]:
        """The vector of one query, formatted with ``instruction``."""
        _check_text(query, "query")
        holder = self.holder
        return _vectors(holder, holder.engine.encode([query], is_query=True))[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        _check_text(query, "query")
        holder = self.holder
        engine = await holder.engine_async()
        return _vectors(holder, await engine.encode_async([query], is_query=True))[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        """The vector of one text (no instruction)."""
        _check_text(text, "text")
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        _check_text(text, "text")
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in input order, from one engine call."""
        if not _check_texts(texts):
            return []
        holder = self.holder
        return _vectors(holder, holder.engine.encode(list(texts), progress=self.show_progress)).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`_get_text_embeddings`, awaiting the model's shared scheduler (no thread held meanwhile)."""
        if not _check_texts(texts):
            return []
        holder = self.holder
        engine = await holder.engine_async()
        return _vectors(holder, await engine.encode_async(list(texts), progress=self.show_progress)).tolist()

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


def _vectors(holder: EngineHolder[Any], result: EmbedResult) -> np.ndarray:
    """The result's ``[N, d]`` vectors, its meta kept as the holder's last."""
    holder.record(result.meta)
    return result.embeddings


def _check_texts(texts: list[str]) -> bool:
    """Raise on anything but a list of strings; ``False`` for an empty list."""
    if isinstance(texts, str):
        raise TypeError(
            "texts must be a list of strings, got a single string; wrap it in a list, or use get_text_embedding."
        )
    check_texts(texts, "texts")
    return len(texts) > 0


def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}; use get_text_embedding_batch for a list.")
