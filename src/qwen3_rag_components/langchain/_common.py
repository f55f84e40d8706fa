"""Fields, checks and lazy engine loading shared by Qwen3Reranker and Qwen3Embeddings."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr, ValidationInfo, field_validator

from ..engine.cache import get_adapter_engine
from ..engine.loading import check_positive_int, resolve_dtype

_load_lock = threading.Lock()  # one first load at a time; module-level, as a lock field could not be deep-copied


class EngineFields(BaseModel):
    """Where and how the model is loaded; subclasses name the engine class and add its options."""

    model: str
    """Hub id or local folder of the checkpoint (safetensors, no remote code)."""
    device: str | None = None
    """Torch device such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``; ``None`` picks CUDA when available, else CPU."""
    dtype: str | None = None
    """``"float32"``, ``"bfloat16"`` or ``"float16"`` (or ``"fp32"``, ``"bf16"``, ``"fp16"``); ``None`` gives bf16
    on CUDA and fp32 on CPU."""
    local_files_only: bool = False
    """Only use local files (a folder or the Hugging Face cache); never download."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to load."""
    token: SecretStr | None = None
    """Hugging Face token for private or gated models; ``None`` falls back to the ``HF_TOKEN`` environment
    variable or the token saved by ``hf auth login``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, use_attribute_docstrings=True)

    engine_class: ClassVar[type]
    _engine: Any = PrivateAttr(default=None)

    @field_validator("max_length", "max_tokens_per_pack", "max_docs_per_pack", "dimensions", check_fields=False)
    @classmethod
    def _check_positive(cls, value: int | None, info: ValidationInfo) -> int | None:
        check_positive_int(info.field_name or "value", value, optional=True)
        return value

    @field_validator("dtype")
    @classmethod
    def _check_dtype(cls, dtype: str | None) -> str | None:
        resolve_dtype(dtype, torch.device("cpu"))  # raises ValueError listing the supported names
        return dtype

    def _get_engine(self) -> Any:
        """The shared engine for this checkpoint, loaded on first use (once, even when called from several threads)."""
        if self._engine is None:
            with _load_lock:
                if self._engine is None:
                    self._engine = get_adapter_engine(
                        self,
                        device=self.device,
                        token=self.token.get_secret_value() if self.token is not None else None,
                    )
        return self._engine

    async def _aget_engine(self) -> Any:
        """:meth:`_get_engine` for the event loop: a first load runs in a worker thread."""
        return self._engine if self._engine is not None else await asyncio.to_thread(self._get_engine)
