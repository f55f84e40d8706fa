"""Qwen3EmbedEngine: packed Qwen3-Embedding with the official query format, <|endoftext|> pooling and MRL."""

from __future__ import annotations

import asyncio
import functools
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from .forward import PackedRun
from .heads import check_dimensions, embedding_head
from .loading import load_qwen3
from .meta import Progress, RunMeta, progress_callback, run_meta
from .options import DEFAULT_MAX_LENGTH, DEFAULT_MAX_TOKENS_PER_PACK, EmbedOptions, HasOptions, LoadSpec
from .packing import dedup
from .precision import (
    Precision,
    Ranges,
    RangesLike,
    check_precision,
    check_ranges,
    check_ranges_cover,
    quantize_embeddings,
)
from .prompts import (
    DEFAULT_EMBED_INSTRUCTION,
    ENDOFTEXT,
    TextTokenizer,
    check_instruction,
    check_texts,
    embed_query_text,
)
from .quantize import Quantization, quantization_of
from .scheduler import Job, PackScheduler


@dataclass(frozen=True)
class EmbedPlan:
    """What :meth:`Qwen3EmbedEngine.plan` prepared: the scheduler's job and the head's settings."""

    job: Job
    text_index: list[int]  # item of each input text
    dimensions: int | None
    normalize: bool
    precision: str
    ranges: Ranges | None
    truncated_documents: int


@dataclass(frozen=True)
class EmbedResult:
    embeddings: np.ndarray  # [N, dimensions] float32 (or the precision's form), in input order
    meta: RunMeta


class Qwen3EmbedEngine(HasOptions):
    """Embeds texts with a Qwen3-Embedding checkpoint, packing many texts per forward pass.

    Vectors equal the official model-card computation: queries are ``"Instruct: {instruction}\\nQuery:{query}"``,
    documents are used as they are; text tokens are cut to ``max_length - 1`` and ``<|endoftext|>`` is appended; the
    embedding is the final hidden state at that token; ``dimensions`` keeps its first values (MRL), then it is
    L2-normalised (unless ``normalize=False``). Texts are packed back to back, each attending causally to itself only.

    Special-token strings inside texts (``<|endoftext|>``, ``<|im_end|>``, ...) are tokenized as plain text.

    Example:
        >>> engine = Qwen3EmbedEngine.from_pretrained("Qwen/Qwen3-Embedding-0.6B")
        >>> docs = engine.embed_documents(["The capital of China is Beijing."])
        >>> query = engine.embed_queries(["What is the capital of China?"])[0]
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        options: EmbedOptions | None = None,
        *,
        dtype_reason: str = "the model's own dtype",
    ) -> None:
        self.text = TextTokenizer(tokenizer)
        self.endoftext_id = self.text.token_id(ENDOFTEXT)
        # Qwen3ForCausalLM checkpoints carry the base model under .model; the head is not needed.
        self.model = getattr(model, "model", model).eval()
        self.scheduler = PackScheduler(self.model)  # one queue for this model, shared by with_options copies
        self.hidden_size: int = self.model.config.hidden_size
        self.device = self.model.embed_tokens.weight.device
        self.dtype = self.model.embed_tokens.weight.dtype
        self.quantization = quantization_of(self.model)  # "int8" or None, in every call's meta
        self.dtype_reason = dtype_reason  # in every call's meta
        self.options = self._check_options(options or EmbedOptions())

    def _check_options(self, options: EmbedOptions) -> EmbedOptions:
        check_dimensions(options.dimensions, self.hidden_size)
        return options

    @classmethod
    def load(cls, spec: LoadSpec, options: EmbedOptions | None = None) -> Qwen3EmbedEngine:
        """Load the checkpoint ``spec`` names; :meth:`from_pretrained` with the options as data."""
        model, tokenizer, why = load_qwen3(AutoModel, spec)
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
        dimensions: int | None = None,
        normalize: bool = True,
        precision: Precision = "float32",
        ranges: RangesLike | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK,
        local_files_only: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
    ) -> Qwen3EmbedEngine:
        """Load a Qwen3-Embedding checkpoint (``Qwen3Model`` or ``Qwen3ForCausalLM``) from a hub id or a folder.

        ``device`` defaults to CUDA when available, else CPU; ``dtype`` to bf16 on CUDA and on CPUs where bf16
        measures faster, else fp32 (the exact path; see :func:`~qwen3_rag_components.engine.placement.choose_dtype`).
        ``quantization="int8"`` (CPU) quantizes the projections of every layer but the first to int8 at load (see
        :mod:`~qwen3_rag_components.engine.quantize`): faster where the CPU's int8 products are, at a measured cost in
        fidelity (docs/fidelity.md).
        The other arguments are
        :class:`~qwen3_rag_components.engine.options.LoadSpec` and
        :class:`~qwen3_rag_components.engine.options.EmbedOptions` fields; ``dimensions``, ``normalize``,
        ``precision`` and ``ranges`` are the defaults of every call.
        """
        spec = LoadSpec(model_name_or_path, device, dtype, local_files_only, revision, token, quantization)
        options = EmbedOptions(
            instruction=instruction,
            dimensions=dimensions,
            normalize=normalize,
            precision=precision,
            ranges=ranges,
            max_length=max_length,
            max_tokens_per_pack=max_tokens_per_pack,
        )
        return cls.load(spec, options)

    def embed_documents(
        self, texts: Sequence[str], *, dimensions: int | None = None, normalize: bool | None = None
    ) -> list[list[float]]:
        """One vector per document, in input order (no instruction, as in the official code)."""
        return self.encode(texts, dimensions=dimensions, normalize=normalize).embeddings.tolist()

    def embed_queries(
        self,
        texts: Sequence[str],
        *,
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
    ) -> list[list[float]]:
        """One vector per query, formatted as ``Instruct: {instruction}\\nQuery:{query}``."""
        result = self.encode(texts, is_query=True, instruction=instruction, dimensions=dimensions, normalize=normalize)
        return result.embeddings.tolist()

    def embed_documents_with_meta(
        self, texts: Sequence[str], *, dimensions: int | None = None, normalize: bool | None = None
    ) -> EmbedResult:
        return self.encode(texts, dimensions=dimensions, normalize=normalize)

    def embed_queries_with_meta(
        self,
        texts: Sequence[str],
        *,
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
    ) -> EmbedResult:
        return self.encode(texts, is_query=True, instruction=instruction, dimensions=dimensions, normalize=normalize)

    def encode(
        self,
        texts: Sequence[str],
        *,
        is_query: bool = False,
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        precision: str | None = None,
        ranges: RangesLike | None = None,
        progress: bool | Progress = False,
    ) -> EmbedResult:
        """Embeddings as an ``[N, dimensions]`` array plus meta; the form to use for large corpora.

        ``instruction``, ``dimensions``, ``normalize``, ``precision`` and ``ranges`` left at ``None`` take the
        engine's options. ``precision`` other than ``"float32"`` returns sentence-transformers' quantized forms
        (see :mod:`~qwen3_rag_components.engine.precision`): ``int8``/``uint8`` ``[N, d]`` over ``ranges`` (per
        dimension minima and maxima; ``None``: this call's own vectors), ``binary``/``ubinary`` ``[N, ceil(d / 8)]``.
        ``progress=True`` shows a tqdm bar; a callable gets ``(done, total)`` after each pack.
        """
        start = time.perf_counter()
        plan = self.plan(
            texts,
            is_query=is_query,
            instruction=instruction,
            dimensions=dimensions,
            normalize=normalize,
            precision=precision,
            ranges=ranges,
        )
        with progress_callback(progress, len(plan.job.items), "Embedding") as callback:
            run = self.scheduler.run(plan.job, callback)
        return self.finish(plan, run, start)

    async def encode_async(
        self,
        texts: Sequence[str],
        *,
        is_query: bool = False,
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        precision: str | None = None,
        ranges: RangesLike | None = None,
        progress: bool | Progress = False,
    ) -> EmbedResult:
        """:meth:`encode` for the event loop: awaits the model's scheduler; cancelling drops the unstarted packs."""
        start = time.perf_counter()
        # tokenizing: off the loop
        plan = await asyncio.to_thread(
            functools.partial(
                self.plan,
                texts,
                is_query=is_query,
                instruction=instruction,
                dimensions=dimensions,
                normalize=normalize,
                precision=precision,
                ranges=ranges,
            )
        )
        with progress_callback(progress, len(plan.job.items), "Embedding") as callback:
            run = await self.scheduler.run_async(plan.job, callback)
        return self.finish(plan, run, start)

    def plan(
        self,
        texts: Sequence[str],
        *,
        is_query: bool = False,
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        precision: str | None = None,
        ranges: RangesLike | None = None,
    ) -> EmbedPlan:
        """Check and tokenize, computing nothing: one item per distinct text, cut to ``max_length - 1`` tokens plus
        <|endoftext|> (``plan.truncated_documents`` counts the texts that cut shortens)."""
        options = self.options
        check_texts(texts, "texts")
        dimensions = options.dimensions if dimensions is None else dimensions
        check_dimensions(dimensions, self.hidden_size)
        normalize = options.normalize if normalize is None else normalize
        precision = options.precision if precision is None else check_precision(precision)
        checked_ranges = options.ranges if ranges is None else check_ranges(ranges)  # options hold them checked
        if checked_ranges is not None:  # before any compute
            check_ranges_cover(checked_ranges, dimensions or self.hidden_size)
        if is_query:
            default = DEFAULT_EMBED_INSTRUCTION if options.instruction is None else options.instruction
            instruction = check_instruction(instruction, default)
            texts = [embed_query_text(instruction, text) for text in texts]
        elif instruction is not None:
            raise ValueError("instruction applies to queries only; documents are embedded without one.")

        unique_texts, text_index = dedup(list(texts))
        ids = self.text.plain_ids(unique_texts)
        kept = options.max_length - 1
        items = [array("i", tokens[:kept] + [self.endoftext_id]) for tokens in ids]
        return EmbedPlan(
            job=Job([[]], [0] * len(items), items, options.max_tokens_per_pack, None),
            text_index=text_index,
            dimensions=dimensions,
            normalize=normalize,
            precision=precision,
            ranges=checked_ranges,
            truncated_documents=sum(len(ids[i]) > kept for i in text_index),
        )

    def finish(self, plan: EmbedPlan, run: PackedRun, start: float) -> EmbedResult:
        """The embedding head (MRL cut, L2 normalisation) at each item's last token, back in input order, then
        the output precision (its ranges, when none are given, from these input-order vectors); and the meta of the
        call begun at ``start`` (``time.perf_counter()``)."""
        vectors = embedding_head(run.hidden, plan.dimensions, plan.normalize)  # [U, d]
        embeddings = (
            vectors.cpu().numpy()[plan.text_index]
            if plan.text_index
            else np.zeros((0, plan.dimensions or self.hidden_size), np.float32)
        )
        embeddings = quantize_embeddings(embeddings, plan.precision, plan.ranges)
        meta = run_meta(
            run,
            start,
            documents=len(plan.text_index),
            unique_documents=len(plan.job.items),
            truncated_documents=plan.truncated_documents,
            padding_free_tokens=sum(len(plan.job.items[i]) for i in plan.text_index),
            device=self.device,
            dtype=self.dtype,
            dtype_reason=self.dtype_reason,
            quantization=self.quantization,
        )
        return EmbedResult(embeddings, meta)
