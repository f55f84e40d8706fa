"""Qwen3Ranker: a Haystack ranker over the packed Qwen3-Reranker engine."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from haystack import Document, component
from haystack.utils import ComponentDevice, Secret

from ..engine import Qwen3RerankEngine, RerankOptions
from ..engine.options import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_TOKENS_PER_PACK,
    DEFAULT_RERANKER,
    check_positive_int,
    chunking_of,
)
from ..engine.service import Ranking, Reranker
from ._common import EngineComponent, check_documents, texts_to_embed


@component
class Qwen3Ranker(EngineComponent):
    """
    Ranks documents by their relevance to a query with a Qwen3-Reranker model.

    The score of a document is the official Qwen3-Reranker one: the probability that the model answers "yes" to
    "does this document meet the requirements of the query and instruction?" (``scale_score=True``), or the raw
    ``logit_yes - logit_no`` (``scale_score=False``; the probability is its sigmoid, so both give the same order).
    Many documents are scored per forward pass with the query computed once; the scores equal the per-pair model-card
    computation.

    Unlike Haystack's cross-encoder rankers there are no ``query_prefix``/``document_prefix`` parameters: the prompt
    template is fixed by the model's training, and the way to steer it is ``instruction`` (at init or per run).

    Documents with the same ``id`` are scored once and returned once (the copy with the highest incoming score is
    kept, as in Haystack's rankers). A document whose ``content`` is ``None`` is scored as an empty text (plus its
    ``meta_fields_to_embed`` values), like Haystack's rankers do.

    ### Usage example

    ```python
    from haystack import Document
    from qwen3_rag_components.haystack import Qwen3Ranker

    ranker = Qwen3Ranker("Qwen/Qwen3-Reranker-0.6B", top_k=2)
    docs = [Document(content="Paris"), Document(content="Berlin"), Document(content="Gravity")]
    result = ranker.run(query="What is the capital of Germany?", documents=docs)
    print(result["documents"][0].content, result["documents"][0].score)  # Berlin 0.9...
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_RERANKER,
        *,
        device: ComponentDevice | None = None,
        dtype: str | None = None,
        quantization: str | None = None,
        token: Secret | None = Secret.from_env_var(["HF_API_TOKEN", "HF_TOKEN"], strict=False),  # noqa: B008
        local_files_only: bool = False,
        revision: str | None = None,
        top_k: int = 10,
        instruction: str | None = None,
        scale_score: bool = True,
        score_threshold: float | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        max_length: int = DEFAULT_MAX_LENGTH,
        max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK,
        max_docs_per_pack: int | None = None,
        max_tokens_per_doc: int | None = None,
        chunk_overlap: int = 0,
    ) -> None:
        """
        Creates a Qwen3Ranker; the model is loaded by `warm_up()` or the first `run()`.

        :param model:
            A Qwen3-Reranker hub id or a local folder (safetensors weights; no remote code is run).
        :param device: The device; `None` picks the best one here (and is saved as `None`, to pick again on load).
        :param dtype: `"float32"`, `"bfloat16"`, `"float16"` (or `"fp32"`, `"bf16"`, `"fp16"`);
            `None`: bf16 on CUDA and on CPUs where bf16 measures faster, else fp32. fp32 gives the official numbers
            (within 1e-5); bf16 is faster and agrees to about 1e-2 (see docs/fidelity.md).
        :param quantization: `"int8"` (CPU only): the projections of every layer but the first run int8 weights and
            activations, quantized at load from the normal checkpoint; faster where the CPU's int8 products are, with
            scores or vectors that move from the fp32 ones (measured in docs/fidelity.md). `None`: everything in
            `dtype`.
        :param token: The Hugging Face token for private or gated models.
        :param local_files_only: If `True`, never download: use the local folder or the Hugging Face cache only.
        :param revision: The model revision (branch, tag or commit) on the Hugging Face Hub.
        :param top_k:
            The maximum number of documents to return.
        :param instruction:
            The task instruction of the prompt. `None` uses the official default, "Given a web search query, retrieve
            relevant passages that answer the query".
        :param scale_score:
            If `True`, scores are P(yes) in [0, 1]; if `False`, the raw `logit_yes - logit_no`.
        :param score_threshold:
            If set, only documents with a score >= this value are returned (on the scale chosen by `scale_score`).
        :param meta_fields_to_embed:
            Meta fields whose values are put before the content, in this order.
        :param embedding_separator:
            The separator between the meta values and the content.
        :param max_length:
            The maximum prompt length in tokens; longer documents are cut from their end, as the official code does.
        :param max_tokens_per_pack:
            The token budget of one forward pass (the batch size, in tokens). Lower it if memory runs out.
        :param max_docs_per_pack:
            An optional cap on the documents in one forward pass.
        :param max_tokens_per_doc:
            Opt-in chunking: a longer document is scored in windows of this many tokens and gets its best window's
            score (`meta["chunks"]` counts the windows). `None` keeps the official end-cut.
        :param chunk_overlap:
            The tokens each window repeats from the one before it (with `max_tokens_per_doc`).
        :raises ValueError:
            If `top_k` is not > 0, or another option is out of range.
        """
        check_positive_int("top_k", top_k)
        options = RerankOptions(
            instruction=instruction,
            max_length=max_length,
            max_tokens_per_pack=max_tokens_per_pack,
            max_docs_per_pack=max_docs_per_pack,
            chunking=chunking_of(max_tokens_per_doc, chunk_overlap),
        )
        self._init_engine(
            Qwen3RerankEngine, options, model, device, dtype, quantization, token, local_files_only, revision
        )
        self.top_k = top_k
        self.scale_score = scale_score
        self.score_threshold = score_threshold
        self.meta_fields_to_embed = meta_fields_to_embed or []
        self.embedding_separator = embedding_separator

    def _own_parameters(self) -> dict[str, Any]:
        options = self.holder.options
        return dict(
            top_k=self.top_k,
            instruction=options.instruction,
            scale_score=self.scale_score,
            score_threshold=self.score_threshold,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            max_length=options.max_length,
            max_tokens_per_pack=options.max_tokens_per_pack,
            max_docs_per_pack=options.max_docs_per_pack,
            max_tokens_per_doc=None if options.chunking is None else options.chunking.max_tokens_per_doc,
            chunk_overlap=0 if options.chunking is None else options.chunking.overlap,
        )

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> dict[str, Any]:
        """
        Returns the documents sorted by relevance to the query, most relevant first, as copies with `score` set.

        :param query:
            The query.
        :param documents:
            The documents to rank; duplicates (same `id`) are scored and returned once.
        :param top_k:
            The maximum number of documents to return. Overrides the init value if set.
        :param scale_score:
            `True`: P(yes); `False`: the raw `logit_yes - logit_no`. Overrides the init value if set.
        :param score_threshold:
            Only return documents with a score >= this value. Overrides the init value if set.
        :param instruction:
            The task instruction for this run. Overrides the init value if set.
        :returns:
            A dictionary with the following keys:
            - `documents`: The ranked documents, at most `top_k`.
            - `meta`: What the run computed (`RunMeta.to_dict()`: documents, packs, tokens, timings, device, dtype).
        :raises ValueError:
            If `top_k` is not > 0.
        :raises TypeError:
            If `documents` is not a list of Documents.
        """
        ranking = self._ranking(documents, top_k, scale_score, score_threshold)
        return ranking.output(Reranker(self.holder).rank(query, ranking.texts, **ranking.choices(instruction)))

    def _ranking(
        self, documents: list[Document], top_k: int | None, scale_score: bool | None, score_threshold: float | None
    ) -> _Ranking:
        """Checked inputs with the init values filled in; the same for :meth:`run` and :meth:`run_async`."""
        check_documents(documents, "Qwen3Ranker")
        top_k = self.top_k if top_k is None else top_k
        check_positive_int("top_k", top_k)
        unique_documents = _deduplicate(documents)
        return _Ranking(
            documents=unique_documents,
            texts=texts_to_embed(unique_documents, self.meta_fields_to_embed, self.embedding_separator),
            top_k=top_k,
            scale_score=self.scale_score if scale_score is None else scale_score,
            score_threshold=self.score_threshold if score_threshold is None else score_threshold,
        )

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> dict[str, Any]:
        """
        Like `run()`, with the same parameters and outputs, awaiting the model's shared scheduler: no thread is held
        while the model computes, and cancelling the task drops its packs that have not started.
        """
        ranking = self._ranking(documents, top_k, scale_score, score_threshold)
        return ranking.output(await Reranker(self.holder).arank(query, ranking.texts, **ranking.choices(instruction)))


@dataclasses.dataclass(frozen=True)
class _Ranking:
    documents: list[Document]  # one per id
    texts: list[str]  # what the model reads of each
    top_k: int
    scale_score: bool
    score_threshold: float | None

    def choices(self, instruction: str | None) -> dict[str, Any]:
        """The keyword arguments of the service's rank call."""
        return dict(
            top_k=self.top_k,
            threshold=self.score_threshold,
            instruction=instruction,
            return_logits=not self.scale_score,
        )

    def output(self, ranking: Ranking) -> dict[str, Any]:
        """Copies with ``score`` set, best first (ties keep the input order), thresholded, at most ``top_k``."""
        ranked = [dataclasses.replace(self.documents[i], score=score) for i, score in ranking.ranked()]
        return {"documents": ranked, "meta": ranking.meta.to_dict()}


def _deduplicate(documents: list[Document]) -> list[Document]:
    """One document per id, in first-seen order; of duplicates, the one with the highest incoming score."""
    best: dict[str, Document] = {}
    for doc in documents:
        kept = best.get(doc.id)
        if kept is None or _score(doc) > _score(kept):
            best[doc.id] = doc
    return list(best.values())


def _score(doc: Document) -> float:
    return -math.inf if doc.score is None else doc.score
