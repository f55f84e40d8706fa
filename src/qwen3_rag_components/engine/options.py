"""Every option of the engines, declared once: what to load (:class:`LoadSpec`) and how to run it (the options).

The adapters (Haystack, LangChain, Ray, the CLI) take these as flat keyword arguments, because their frameworks want
flat signatures, and build the dataclasses with explicit keywords; defaults and checks live here only.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Self

import torch

from .errors import InvalidParameter
from .placement import check_dtype, parse_device, resolve_device, resolve_dtype
from .precision import Precision, RangesLike, check_precision, check_ranges
from .prompts import check_instruction
from .quantize import Quantization, check_quantization, check_quantization_device

DEFAULT_RERANKER = "Qwen/Qwen3-Reranker-0.6B"  # the model every reranking adapter loads when none is named
DEFAULT_EMBEDDER = "Qwen/Qwen3-Embedding-0.6B"  # the same for embedding
DEFAULT_MAX_LENGTH = 8192  # the official maximum prompt length of both model families
DEFAULT_MAX_TOKENS_PER_PACK = 8192  # one pack's token budget: the batch size, in tokens


def is_local_path(name: str) -> bool:
    """The one rule for "local folder or Hub id": Hub ids are 'name' or 'owner/name'; anything absolute, relative,
    home-based or deeper is meant as a local folder (and gets a clear error when it does not exist)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def check_positive_int(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = "a positive int or None" if optional else "a positive int"
        raise InvalidParameter(name, f"{name}={value!r} is invalid; it must be {hint}.")


def check_model_name(model: object) -> str:
    """A hub id or a local folder (``str`` or path-like) as a ``str``; ``TypeError`` for anything else."""
    if not isinstance(model, str | os.PathLike):
        raise TypeError(f"model must be a hub id or a local folder (str), got {type(model).__name__}.")
    name = os.fspath(model)
    return os.path.expanduser(name) if is_local_path(name) else name


@dataclass(frozen=True)
class LoadSpec:
    """Which checkpoint to load, where, and how to reach it; the engine cache keys on :meth:`resolved`."""

    model: str  # a hub id ("Qwen/Qwen3-Reranker-0.6B") or a local folder ("./reranker", "~/models/x")
    device: str | torch.device | None = None  # None: CUDA when available, else CPU
    # None: bf16 on CUDA and on CPUs where bf16 measures faster, else fp32; $QWEN3_RAG_DTYPE sets it
    dtype: str | torch.dtype | None = None
    local_files_only: bool = False  # never download: a folder or the Hugging Face cache only
    revision: str | None = None  # hub branch, tag or commit
    token: str | bool | None = field(default=None, repr=False)  # hub token; None: HF_TOKEN or the saved login
    quantization: Quantization | None = None  # "int8": int8 weights and activations in the projections (CPU)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", check_model_name(self.model))
        if self.device is not None:
            parse_device(self.device)  # only parsed: a Ray driver may lack the GPU its workers have
        check_dtype(self.dtype)
        check_quantization(self.quantization)

    def resolved(self) -> LoadSpec:
        """The same spec with the device checked on this machine and the dtype chosen for it."""
        device = resolve_device(self.device)
        check_quantization_device(self.quantization, device)
        return dataclasses.replace(self, device=device, dtype=resolve_dtype(self.dtype, device))


def chunking_of(max_tokens_per_doc: int | None, overlap: int = 0) -> Chunking | None:
    """The adapters' flat ``max_tokens_per_doc``/``chunk_overlap`` parameters as :class:`Chunking` (None: off)."""
    if max_tokens_per_doc is None:
        if overlap:
            raise InvalidParameter("chunk_overlap", "chunk_overlap applies with max_tokens_per_doc only; set both.")
        return None
    return Chunking(max_tokens_per_doc, overlap)


@dataclass(frozen=True)
class Chunking:
    """Long documents scored in windows of tokens, the document's score the best window's (opt-in; the default is
    the official end-cut). Cohere's ``max_tokens_per_doc``, with an overlap between neighbouring windows."""

    max_tokens_per_doc: int  # document tokens per window (each window is also cut to max_length, as a document is)
    overlap: int = 0  # tokens each window repeats from the one before it, 0 to max_tokens_per_doc - 1

    def __post_init__(self) -> None:
        check_positive_int("max_tokens_per_doc", self.max_tokens_per_doc)
        overlap = self.overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < self.max_tokens_per_doc:
            raise InvalidParameter(
                "overlap",
                f"overlap={overlap!r} is invalid; use an int from 0 to max_tokens_per_doc - 1 "
                f"({self.max_tokens_per_doc - 1}).",
            )

    def windows(self, length: int) -> list[tuple[int, int]]:
        """``(start, end)`` of each window over ``length`` tokens, in order; one (maybe empty) window at least."""
        stride = self.max_tokens_per_doc - self.overlap
        starts = range(0, max(length - self.overlap, 1), stride)
        return [(start, min(start + self.max_tokens_per_doc, length)) for start in starts]


@dataclass(frozen=True)
class RerankOptions:
    """How :class:`~qwen3_rag_components.engine.Qwen3RerankEngine` scores; changing them needs no reload."""

    instruction: str | None = None  # the <Instruct> text; None: the official web-search instruction
    max_length: int = DEFAULT_MAX_LENGTH  # prompt tokens per document; longer documents are cut from their end
    max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK  # token budget of one forward pass
    max_docs_per_pack: int | None = None  # cap on documents per forward pass; None: the budget alone decides
    chunking: Chunking | None = None  # long documents in windows, scored by the best one; None: the official end-cut

    def __post_init__(self) -> None:
        check_instruction(self.instruction, "")
        check_positive_int("max_length", self.max_length)
        check_positive_int("max_tokens_per_pack", self.max_tokens_per_pack)
        check_positive_int("max_docs_per_pack", self.max_docs_per_pack, optional=True)
        if self.chunking is not None and not isinstance(self.chunking, Chunking):
            raise TypeError(f"chunking must be a Chunking or None, got {type(self.chunking).__name__}.")


@dataclass(frozen=True)
class EmbedOptions:
    """How :class:`~qwen3_rag_components.engine.Qwen3EmbedEngine` embeds; changing them needs no reload."""

    instruction: str | None = None  # the query instruction; None: the official one (documents never get one)
    dimensions: int | None = None  # keep the first values (MRL), 1 to the hidden size; None: the full vector
    normalize: bool = True  # L2-normalise after the MRL cut
    precision: Precision = "float32"  # output: float32, int8, uint8, binary or ubinary (sentence-transformers rules)
    # int8/uint8: per-dimension minima and maxima, kept as two tuples; None: from each call's vectors
    ranges: RangesLike | None = None
    max_length: int = DEFAULT_MAX_LENGTH  # tokens per text including the appended <|endoftext|>
    max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK  # token budget of one forward pass

    def __post_init__(self) -> None:
        check_instruction(self.instruction, "")
        check_positive_int("dimensions", self.dimensions, optional=True)
        if not isinstance(self.normalize, bool):
            raise TypeError(f"normalize must be True or False, got {self.normalize!r}.")
        check_precision(self.precision)
        object.__setattr__(self, "ranges", check_ranges(self.ranges))
        check_positive_int("max_length", self.max_length)
        if self.max_length < 2:
            raise InvalidParameter(
                "max_length", f"max_length={self.max_length} leaves no room for text before <|endoftext|>; use >= 2."
            )
        check_positive_int("max_tokens_per_pack", self.max_tokens_per_pack)


class HasOptions:
    """``with_options`` for an engine whose options are one frozen dataclass in ``self.options``."""

    options: Any

    def _check_options(self, options: Any) -> Any:
        """Checks that need the loaded model or tokenizer; returns ``options``."""
        return options

    def with_options(self, options: Any = None, /, **changes: Any) -> Self:
        """A copy sharing this engine's loaded model, tokenizer and scheduler, with other options.

        ``options`` replaces them all (a :class:`RerankOptions` or :class:`EmbedOptions`); ``changes`` then replace
        single fields, e.g. ``engine.with_options(max_tokens_per_pack=2048)``.
        """
        options = self.options if options is None else options
        if not isinstance(options, type(self.options)):
            raise TypeError(f"options must be {type(self.options).__name__}, got {type(options).__name__}.")
        names = [f.name for f in dataclasses.fields(options)]
        if unknown := sorted(set(changes) - set(names)):
            raise TypeError(f"with_options() got unknown options {unknown}; valid: {names}.")
        clone = copy.copy(self)
        clone.options = self._check_options(dataclasses.replace(options, **changes))
        return clone
