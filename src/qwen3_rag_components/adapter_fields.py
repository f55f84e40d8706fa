"""Fields and the engine holder shared by the pydantic adapters (LangChain's and LlamaIndex's classes); imports neither
framework."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from .engine import EmbedOptions, EngineHolder, LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, RerankOptions, RunMeta


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
        return LoadSpec(self.model, self.device, self.dtype, self.local_files_only, self.revision, token)

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
