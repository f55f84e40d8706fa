"""Fields and the engine holder shared by the pydantic adapters (LangChain's and LlamaIndex's classes); imports neither
framework."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from .engine import (
    EmbedOptions,
    EngineHolder,
    LoadSpec,
    Qwen3EmbedEngine,
    Qwen3RerankEngine,
    RerankOptions,
    RunMeta,
)
from .engine.options import (
    DEFAULT_EMBEDDER,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_TOKENS_PER_PACK,
    DEFAULT_RERANKER,
    chunking_of,
)


class EngineFields(BaseModel):
    """Where and how the model is loaded; subclasses add their engine's options and say how to build them."""

    model: str
    """Hub id or local folder of the checkpoint (safetensors, no remote code)."""
    device: str | None = None
    """Torch device such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``; ``None`` picks CUDA when available, else CPU."""
    dtype: str | None = None
    """``"float32"``, ``"bfloat16"`` or ``"float16"`` (or ``"fp32"``, ``"bf16"``, ``"fp16"``); ``None`` gives bf16
    on CUDA and on CPUs where bf16 products measure faster than fp32 (AMX, Zen 4), else fp32. fp32 gives the official
    numbers (within 1e-5); bf16 is faster and agrees to about 1e-2 (see docs/fidelity.md)."""
    quantization: str | None = None
    """``"int8"`` (CPU only): the projections of every layer but the first run int8 weights and activations,
    quantized at load from the normal checkpoint; faster where the CPU's int8 products are, with scores or vectors
    that move from the fp32 ones (measured in docs/fidelity.md). ``None``: everything in ``dtype``."""
    local_files_only: bool = False
    """Only use local files (a folder or the Hugging Face cache); never download."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to load."""
    token: SecretStr | None = Field(default=None, exclude=True)
    """Hugging Face token for private or gated models; ``None`` falls back to the ``HF_TOKEN`` environment
    variable or the token saved by ``hf auth login``. Never serialised (``model_dump``, ``to_dict``, ``to_json``)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, use_attribute_docstrings=True)

    engine_class: ClassVar[type[Qwen3RerankEngine] | type[Qwen3EmbedEngine]]
    _holder: EngineHolder[Any] | None = PrivateAttr(default=None)

    def _engine_options(self) -> RerankOptions | EmbedOptions:
        raise NotImplementedError

    def _load_spec(self) -> LoadSpec:
        token = self.token.get_secret_value() if self.token is not None else None
        return LoadSpec(
            self.model, self.device, self.dtype, self.local_files_only, self.revision, token, self.quantization
        )

    @model_validator(mode="after")
    def _check_engine_options(self) -> EngineFields:
        """Build the holder now, so that a bad option fails here and not at the first call."""
        _ = self.holder
        return self

    @property
    def holder(self) -> EngineHolder[Any]:
        """The engine holder for the current field values (``holder.engine`` loads the model on first use).

        Changing a field (or ``model_copy(update=...)``) gives a new holder on the next call; the loaded weights
        stay shared through the engine cache.
        """
        spec, options = self._load_spec(), self._engine_options()
        holder = self._holder
        if holder is None or holder.spec != spec or holder.options != options:
            holder = self._holder = EngineHolder(self.engine_class, spec, options)
        return holder

    @property
    def last_meta(self) -> RunMeta | None:
        """What the last finished call computed (documents, packs, tokens, timings); ``None`` before the first."""
        return self._holder.last_meta if self._holder is not None else None


class RerankFields(EngineFields):
    """The reranker adapters' fields (LangChain's ``Qwen3Reranker``, LlamaIndex's ``Qwen3Rerank``)."""

    engine_class: ClassVar[type] = Qwen3RerankEngine

    model: str = DEFAULT_RERANKER
    """Hub id or local folder of a Qwen3-Reranker checkpoint (0.6B, 4B or 8B; safetensors, no remote code)."""
    top_n: int | None = 3
    """How many inputs (documents, nodes) to return, best first; ``None`` returns every one."""
    instruction: str | None = None
    """Task instruction of the prompt; ``None`` uses the official one ("Given a web search query, retrieve
    relevant passages that answer the query")."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Prompt tokens per input (the official value); longer inputs are cut from their end."""
    max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK
    """Token budget of one forward pass: lower it to save memory, raise it for throughput on a large GPU."""
    max_docs_per_pack: int | None = None
    """Most inputs in one forward pass; ``None`` lets the token budget alone decide."""
    max_tokens_per_doc: int | None = None
    """Opt-in chunking: a longer input is scored in windows of this many tokens and gets its best window's score;
    ``None`` keeps the official end-cut."""
    chunk_overlap: int = 0
    """Tokens each window repeats from the one before it (with ``max_tokens_per_doc``)."""

    @field_validator("top_n")
    @classmethod
    def _check_top_n(cls, top_n: int | None) -> int | None:
        if top_n is not None and top_n < 1:
            raise ValueError(f"top_n={top_n} is invalid: use an int >= 1, or None to return every input.")
        return top_n

    def _engine_options(self) -> RerankOptions:
        return RerankOptions(
            instruction=self.instruction,
            max_length=self.max_length,
            max_tokens_per_pack=self.max_tokens_per_pack,
            max_docs_per_pack=self.max_docs_per_pack,
            chunking=chunking_of(self.max_tokens_per_doc, self.chunk_overlap),
        )


class EmbedFields(EngineFields):
    """The embedding adapters' fields (LangChain's ``Qwen3Embeddings``, LlamaIndex's ``Qwen3Embedding``)."""

    engine_class: ClassVar[type] = Qwen3EmbedEngine

    model: str = DEFAULT_EMBEDDER
    """Hub id or local folder of a Qwen3-Embedding checkpoint (0.6B, 4B or 8B; safetensors, no remote code)."""
    instruction: str | None = None
    """Task instruction put before each query; ``None`` uses the official one ("Given a web search query, retrieve
    relevant passages that answer the query"). Documents and texts never get one."""
    dimensions: int | None = None
    """Keep the first ``dimensions`` values of each vector (MRL, 1 to the hidden size), then normalise; ``None``
    keeps the full vector (1024 / 2560 / 4096 for 0.6B / 4B / 8B)."""
    normalize: bool = True
    """L2-normalise the vectors (so that dot product equals cosine similarity)."""
    precision: str = "float32"
    """The vectors' precision, as in sentence-transformers: ``"float32"``, ``"int8"``/``"uint8"`` (256 buckets per
    dimension over ``ranges``), ``"binary"``/``"ubinary"`` (sign bits packed 8 per byte, ``ceil(d / 8)`` values)."""
    ranges: list[list[float]] | None = None
    """For ``"int8"``/``"uint8"``: the minimum and maximum of each dimension (two lists, e.g.
    ``quantization_ranges(calibration_vectors).tolist()``); ``None`` takes them from each call's own vectors, which
    a single query cannot give."""
    show_progress: bool = False
    """Show a tqdm progress bar while embedding."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Tokens per text including the appended ``<|endoftext|>`` (the official value); longer texts are cut."""
    max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK
    """Token budget of one forward pass: lower it to save memory, raise it for throughput on a large GPU."""

    def _engine_options(self) -> EmbedOptions:
        return EmbedOptions(
            instruction=self.instruction,
            dimensions=self.dimensions,
            normalize=self.normalize,
            precision=self.precision,
            ranges=self.ranges,
            max_length=self.max_length,
            max_tokens_per_pack=self.max_tokens_per_pack,
        )
