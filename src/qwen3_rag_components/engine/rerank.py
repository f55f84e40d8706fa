"""Qwen3RerankEngine: packed scoring with the official Qwen3-Reranker prompt, truncation and yes/no head."""

from __future__ import annotations

import functools
import time
import warnings
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from .forward import PackedRun
from .heads import YesNoHead
from .loading import load_qwen3
from .meta import Progress, RunMeta, progress_callback, run_meta
from .options import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_TOKENS_PER_PACK,
    Chunking,
    HasOptions,
    LoadSpec,
    RerankOptions,
)
from .packing import dedup
from .prompts import (
    DEFAULT_RERANK_INSTRUCTION,
    RERANK_PREFIX,
    RERANK_SUFFIX,
    TextTokenizer,
    check_instruction,
    check_list,
    check_query,
    check_texts,
    rerank_document_body,
    rerank_query_body,
)
from .quantize import Quantization, quantization_of
from .scheduler import Job, PackScheduler


@dataclass(frozen=True)
class RerankPlan:
    """What :meth:`Qwen3RerankEngine.plan` prepared: the scheduler's job and what :meth:`~Qwen3RerankEngine.finish`
    needs to put the scores back in request order."""

    job: Job
    request_sizes: list[int]  # documents per request, duplicates included
    pair_of_doc: list[int]  # (query, document) pair of each input document, in request order
    items_of_pair: list[range]  # the items of each pair: one, or its document's windows (chunking)
    chunked: bool
    truncated_documents: int
    padding_free_tokens: int


@dataclass(frozen=True)
class ScoreResult:
    scores: list[float]
    meta: RunMeta


@dataclass(frozen=True)
class BatchScoreResult:
    scores: list[list[float]]
    meta: RunMeta


class Qwen3RerankEngine(HasOptions):
    """Scores documents against a query with a Qwen3-Reranker checkpoint, packing many documents per forward pass.

    Scores equal the official model-card computation: ``P(yes) = softmax([logit_no, logit_yes])[1]`` at the last
    token of ``prefix + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}" + suffix``, with the
    body truncated from the document's end to fit ``max_length``. The query part is computed once per pack, each
    document attends to it and causally to itself only, and only the "yes"/"no" rows of the output head are used.

    Special-token strings inside queries, instructions and documents (``<|im_end|>``, ``<think>``, ...) are
    tokenized as plain text: a document cannot close the prompt and write its own "yes". (The official code would
    turn them into control tokens; for text without such strings the tokens are identical.)

    Example:
        >>> engine = Qwen3RerankEngine.from_pretrained("Qwen/Qwen3-Reranker-0.6B")
        >>> engine.score("What is the capital of China?", ["The capital of China is Beijing.", "Gravity."])
        [0.99..., 0.00...]
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        options: RerankOptions | None = None,
        *,
        dtype_reason: str = "the model's own dtype",
    ) -> None:
        self.text = TextTokenizer(tokenizer)
        self.prefix_ids = self.text.template_ids(RERANK_PREFIX)
        self.suffix_ids = self.text.template_ids(RERANK_SUFFIX)
        self.options = self._check_options(options or RerankOptions())
        output_embeddings = model.get_output_embeddings()
        if output_embeddings is None:
            raise ValueError("The reranker needs a causal-LM checkpoint with an output head (Qwen3ForCausalLM).")
        self.head = YesNoHead(output_embeddings.weight, self.text.token_id("yes"), self.text.token_id("no"))
        self.model = model.model.eval()
        self.scheduler = PackScheduler(self.model)  # one queue for this model, shared by with_options copies
        self.device = self.model.embed_tokens.weight.device
        self.dtype = self.model.embed_tokens.weight.dtype
        self.quantization = quantization_of(self.model)  # "int8" or None, in every call's meta
        self.dtype_reason = dtype_reason  # in every call's meta

    def _check_options(self, options: RerankOptions) -> RerankOptions:
        fixed = len(self.prefix_ids) + len(self.suffix_ids)
        if options.max_length <= fixed:
            raise ValueError(
                f"max_length={options.max_length} leaves no room for the query and document: the official prompt's "
                f"fixed prefix and suffix alone take {fixed} tokens. Use a larger max_length (the official value is "
                f"{DEFAULT_MAX_LENGTH})."
            )
        return options

    @classmethod
    def load(cls, spec: LoadSpec, options: RerankOptions | None = None) -> Qwen3RerankEngine:
        """Load the checkpoint ``spec`` names; :meth:`from_pretrained` with the options as data."""
        model, tokenizer, why = load_qwen3(AutoModelForCausalLM, spec)
        return cls(model, tokenizer, options, dtype_reason=why)

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        quantization: Quantization | None = None,
        instruction: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK,
        max_docs_per_pack: int | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
    ) -> Qwen3RerankEngine:
        """Load a Qwen3-Reranker from a hub id or a local folder (safetensors, no remote code).

        ``device`` defaults to CUDA when available, else CPU; ``dtype`` to bf16 on CUDA and on CPUs where bf16
        measures faster, else fp32 (the exact path; see :func:`~qwen3_rag_components.engine.placement.choose_dtype`).
        ``quantization="int8"`` (CPU) quantizes the projections of every layer but the first to int8 at load (see
        :mod:`~qwen3_rag_components.engine.quantize`): faster where the CPU's int8 products are, at a measured cost in
        fidelity (docs/fidelity.md).
        The other arguments are
        :class:`~qwen3_rag_components.engine.options.LoadSpec` and
        :class:`~qwen3_rag_components.engine.options.RerankOptions` fields.
        """
        spec = LoadSpec(model_name_or_path, device, dtype, local_files_only, revision, token, quantization)
        options = RerankOptions(instruction, max_length, max_tokens_per_pack, max_docs_per_pack)
        return cls.load(spec, options)

    def score(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None, return_logits: bool = False
    ) -> list[float]:
        """P(yes) for each document, in input order (``return_logits=True``: the raw ``logit_yes - logit_no``)."""
        return self.score_with_meta(query, documents, instruction=instruction, return_logits=return_logits).scores

    def score_with_meta(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        return_logits: bool = False,
        progress: bool | Progress = False,
    ) -> ScoreResult:
        """Like :meth:`score`, plus meta; ``progress``: a tqdm bar (``True``) or ``progress(done, total)``."""
        result = self.score_batch_with_meta(
            [(query, documents)], instruction=instruction, return_logits=return_logits, progress=progress
        )
        return ScoreResult(result.scores[0], result.meta)

    def score_batch_with_meta(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
        return_logits: bool = False,
        progress: bool | Progress = False,
    ) -> BatchScoreResult:
        """Several ``(query, documents)`` requests in one call, their groups packed together; scores per request.

        For the event loop, :class:`~qwen3_rag_components.engine.service.Reranker` awaits the same steps
        (:meth:`plan`, the scheduler, :meth:`finish`).
        """
        start = time.perf_counter()
        plan = self.plan(requests, instruction)
        with progress_callback(progress, len(plan.job.items), "Reranking") as callback:
            run = self.scheduler.run(plan.job, callback)
        return self.finish(plan, run, start, return_logits=return_logits)

    def __getattr__(self, name: str) -> Any:
        """The 0.1.0 names (``score_batch``, ``score_async``, ...), kept working with a DeprecationWarning."""
        from .service import RENAMED_ENGINE_METHODS  # the service imports this module

        renamed = RENAMED_ENGINE_METHODS.get(name)
        if renamed is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(f"Qwen3RerankEngine.{name} is deprecated; use {renamed[0]}.", DeprecationWarning, stacklevel=2)
        return functools.partial(renamed[1], self)

    def plan(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        instruction: str | None = None,
        chunking: Chunking | None = None,
    ) -> RerankPlan:
        """Check and tokenize, computing nothing: one group per distinct query part, one item per distinct
        (query, document) pair, or per window of its document where ``chunking`` (default: the options') is set;
        ``plan.truncated_documents`` counts the documents the official end-cut shortens."""
        default = DEFAULT_RERANK_INSTRUCTION if self.options.instruction is None else self.options.instruction
        instruction = check_instruction(instruction, default)
        queries, documents = self._check_requests(requests)

        # Query parts: dedup identical queries, tokenize once, and work out each one's document budget.
        unique_queries, query_of_request = dedup(queries)
        bodies = self.text.plain_ids([rerank_query_body(instruction, q) for q in unique_queries])
        prefixes = [self.prefix_ids + body for body in bodies]
        budgets = [self._document_budget(len(body), q) for body, q in zip(bodies, unique_queries, strict=True)]

        # Documents: tokenize each distinct string once; an item is a (query part, document) pair.
        flat_docs = [doc for docs in documents for doc in docs]
        unique_docs, doc_index = dedup(flat_docs)
        doc_ids = self.text.plain_ids([rerank_document_body(d) for d in unique_docs])
        request_of_doc = [r for r, docs in enumerate(documents) for _ in docs]
        pair_keys = [(query_of_request[r], doc_index[k]) for k, r in enumerate(request_of_doc)]
        unique_pairs, pair_of_doc = dedup(pair_keys)

        # Items: one per pair, or one per window of a pair's document (chunking); each cut to its query's budget.
        chunking = self.options.chunking if chunking is None else chunking
        items: list[array[int]] = []
        item_groups: list[int] = []
        items_of_pair: list[range] = []  # the items of each pair, contiguous
        pair_tokens: list[int] = []  # what a per-pair path computes for the pair: prefix + item, per item
        truncated_pairs: list[bool] = []
        for q, d in unique_pairs:
            ids = doc_ids[d]
            windows = [(0, len(ids))] if chunking is None else chunking.windows(len(ids))
            first = len(items)
            for start, end in windows:
                items.append(array("i", ids[start:end][: budgets[q]] + self.suffix_ids))
                item_groups.append(q)
            items_of_pair.append(range(first, len(items)))
            pair_tokens.append(sum(len(prefixes[q]) + len(items[i]) for i in items_of_pair[-1]))
            kept = max(end - start for start, end in windows)
            truncated_pairs.append(kept > budgets[q])
        options = self.options
        job = Job(prefixes, item_groups, items, options.max_tokens_per_pack, options.max_docs_per_pack)
        return RerankPlan(
            job=job,
            request_sizes=[len(docs) for docs in documents],
            pair_of_doc=pair_of_doc,
            items_of_pair=items_of_pair,
            chunked=chunking is not None,
            truncated_documents=sum(truncated_pairs[p] for p in pair_of_doc),
            padding_free_tokens=sum(pair_tokens[p] for p in pair_of_doc),
        )

    def finish(
        self, plan: RerankPlan, run: PackedRun, start: float, *, return_logits: bool = False
    ) -> BatchScoreResult:
        """The yes/no head at each item's readout, back in request order, and the meta of the call begun at
        ``start`` (``time.perf_counter()``)."""
        values = self.head(run.hidden, return_logits=return_logits)  # one per item
        pair_scores = [max(values[i] for i in items) for items in plan.items_of_pair]  # a document: its best window
        flat_scores = [pair_scores[p] for p in plan.pair_of_doc]
        scores, offset = [], 0
        for size in plan.request_sizes:
            scores.append(flat_scores[offset : offset + size])
            offset += size
        meta = run_meta(
            run,
            start,
            documents=len(plan.pair_of_doc),
            unique_documents=len(plan.items_of_pair),
            chunks=len(plan.job.items) if plan.chunked else None,
            truncated_documents=plan.truncated_documents,
            padding_free_tokens=plan.padding_free_tokens,
            device=self.device,
            dtype=self.dtype,
            dtype_reason=self.dtype_reason,
            quantization=self.quantization,
        )
        return BatchScoreResult(scores, meta)

    def _document_budget(self, body_length: int, query: str) -> int:
        """Document tokens the official truncation keeps: max_length - prefix - suffix - query part."""
        budget = self.options.max_length - len(self.prefix_ids) - len(self.suffix_ids) - body_length
        if budget < 1:
            raise ValueError(
                f"The query part takes {body_length} tokens (instruction + query {query[:60]!r}...), the fixed "
                f"prompt {len(self.prefix_ids) + len(self.suffix_ids)}, so max_length={self.options.max_length} "
                "leaves no token for the document. Shorten the query or instruction, or raise max_length."
            )
        return budget

    @staticmethod
    def _check_requests(requests: Sequence[tuple[str, Sequence[str]]]) -> tuple[list[str], list[list[str]]]:
        check_list(requests, "requests", "(query, documents) pairs")
        queries, documents = [], []
        for r, request in enumerate(requests):
            if not (isinstance(request, tuple | list) and len(request) == 2):
                raise TypeError(f"requests[{r}] must be a (query, documents) pair, got {type(request).__name__}.")
            query, docs = request
            check_query(query, "query" if len(requests) == 1 else f"The query of requests[{r}]")
            check_texts(docs, "documents" if len(requests) == 1 else f"requests[{r}] documents")
            queries.append(query)
            documents.append(list(docs))
        return queries, documents
