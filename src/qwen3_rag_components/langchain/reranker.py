"""Qwen3Reranker: a LangChain document compressor that scores documents with Qwen3-Reranker on the packed engine."""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document

from ..adapter_fields import RerankFields
from ..engine.errors import InvalidParameter
from ..engine.prompts import check_list
from ..engine.service import Ranking, Reranker


class Qwen3Reranker(RerankFields, BaseDocumentCompressor):
    """Reranks documents with a Qwen3-Reranker checkpoint; the score is the official P("yes") in [0, 1].

    Returns new ``Document``s (same ``id``, deep-copied metadata plus ``metadata["relevance_score"]``), best first,
    without those scoring below ``score_threshold``, cut to ``top_n``. The model is loaded on first use and shared
    with every other component (LangChain or Haystack) that asks for the same checkpoint, device and dtype.

    Example:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever
            from qwen3_rag_components.langchain import Qwen3Reranker

            reranker = Qwen3Reranker(model="Qwen/Qwen3-Reranker-0.6B", top_n=3)
            retriever = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base_retriever)
            docs = retriever.invoke("What is the capital of China?")
            docs[0].metadata["relevance_score"]  # 0.99...

            reranker.rerank(["Beijing is the capital of China.", "Gravity."], "capital of China?")
            # [{"index": 0, "relevance_score": 0.99...}, {"index": 1, "relevance_score": 0.00...}]
    """

    score_threshold: float | None = None
    """Documents scoring below this (P("yes"), from 0 to 1) are dropped; ``None`` keeps them all."""

    def rerank(
        self, documents: Sequence[str | Document], query: str, *, top_n: int | None = -1
    ) -> list[dict[str, Any]]:
        """``[{"index": i, "relevance_score": s}, ...]`` for the best documents, best first (like ``CohereRerank``).

        ``documents`` may be ``Document``s or strings. ``top_n=-1`` uses this reranker's ``top_n`` and ``None``
        returns every document; ``score_threshold`` applies either way. Ties keep their input order.
        """
        check_list(documents, "documents", "Documents or strings")
        ranking = Reranker(self.holder).rank(query, _texts(documents), **self._choices(top_n))
        return _results(ranking)

    async def arerank(
        self, documents: Sequence[str | Document], query: str, *, top_n: int | None = -1
    ) -> list[dict[str, Any]]:
        """Like :meth:`rerank`, awaiting the model's shared scheduler (no thread held while it computes)."""
        check_list(documents, "documents", "Documents or strings")
        ranking = await Reranker(self.holder).arank(query, _texts(documents), **self._choices(top_n))
        return _results(ranking)

    def _choices(self, top_n: int | None) -> dict[str, Any]:
        """The service's rank arguments: ``top_n=-1`` is this reranker's ``top_n``, ``None`` every document."""
        if top_n == -1:
            top_n = self.top_n
        elif top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
            raise InvalidParameter(
                "top_n", f"top_n={top_n!r} is invalid: use an int >= 1, None for all, or -1 for self.top_n."
            )
        return {"top_k": top_n, "threshold": self.score_threshold}

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """New ``Document``s, best first, with ``metadata["relevance_score"]``; the inputs are left untouched."""
        _check_documents(documents)
        return _compressed(documents, self.rerank(documents, query))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Like :meth:`compress_documents`, awaiting the model's shared scheduler (no thread held while it computes)."""
        _check_documents(documents)
        return _compressed(documents, await self.arerank(documents, query))


def _results(ranking: Ranking) -> list[dict[str, Any]]:
    return [{"index": i, "relevance_score": score} for i, score in ranking.ranked()]


def _texts(documents: Sequence[str | Document]) -> list[str]:
    return [doc.page_content if isinstance(doc, Document) else doc for doc in documents]


def _check_documents(documents: Sequence[Document]) -> None:
    check_list(documents, "documents", "Documents")
    for index, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise TypeError(f"documents[{index}] is {type(doc).__name__}; compress_documents takes Documents.")


def _compressed(documents: Sequence[Document], results: list[dict[str, Any]]) -> list[Document]:
    """New ``Document``s, best first, with ``metadata["relevance_score"]``; the inputs are left untouched."""
    compressed = []
    for result in results:
        doc = documents[result["index"]]
        metadata = deepcopy(doc.metadata)
        metadata["relevance_score"] = result["relevance_score"]
        compressed.append(doc.model_copy(update={"metadata": metadata}))  # keeps id, type and any subclass
    return compressed
