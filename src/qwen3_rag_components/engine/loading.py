"""Loading a Qwen3 checkpoint safely: safetensors only, no remote code, no network beyond what was asked for."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .meta import dtype_name
from .options import LoadSpec, is_local_path
from .placement import choose_dtype, reduced_fp32_matmul
from .quantize import quantize_model

logger = logging.getLogger(__name__)


def load_qwen3(auto_class: type, spec: LoadSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Model (safetensors, no remote code) on its device and dtype, with its projections quantized as
    ``spec.quantization`` asks, its tokenizer, and why that dtype (see :func:`~.placement.choose_dtype`); refuses
    non-Qwen3 checkpoints."""
    asked_dtype, spec = spec.dtype, spec.resolved()
    name = spec.model
    why = choose_dtype(asked_dtype, spec.device)[1]
    int8 = f", {spec.quantization} projections" if spec.quantization else ""
    logger.info("%s: %s%s on %s (%s)", name, dtype_name(spec.dtype), int8, spec.device, why)
    if spec.dtype == torch.float32 and (precision := reduced_fp32_matmul(spec.device)):
        logger.warning(
            "%s: torch's fp32 matmul precision is %r: fp32 matrix products may run in that format where the hardware "
            "has it, and scores and vectors may leave the 1e-5 bound of the official fp32 code; "
            "torch.set_float32_matmul_precision('highest') restores the exact path.",
            name,
            precision,
        )
    hub: dict[str, Any] = {
        "local_files_only": spec.local_files_only,
        "revision": spec.revision,
        "token": spec.token,
        "trust_remote_code": False,
    }
    if is_local_path(name) and not Path(name).is_dir():
        raise FileNotFoundError(
            f"No model folder at {name!r}. Check the path, or pass a Hub id such as 'Qwen/Qwen3-Reranker-0.6B'."
        )
    try:
        with no_hub_lookups(spec.local_files_only):
            config = AutoConfig.from_pretrained(name, **hub)
            if config.model_type != "qwen3":
                raise ValueError(
                    f"{name!r} is a {config.model_type!r} checkpoint; this engine runs Qwen3 checkpoints "
                    "(model_type 'qwen3'), e.g. 'Qwen/Qwen3-Reranker-0.6B' or 'Qwen/Qwen3-Embedding-0.6B'."
                )
            if config.hidden_act != "silu":  # engine.forward computes Qwen3's SiLU MLP itself
                raise ValueError(f"{name!r} has hidden_act={config.hidden_act!r}; this engine runs Qwen3's 'silu'.")
            tokenizer = AutoTokenizer.from_pretrained(name, **hub)
            model, loading_info = auto_class.from_pretrained(
                name, dtype=spec.dtype, use_safetensors=True, output_loading_info=True, **hub
            )
    except OSError as error:
        if spec.local_files_only:
            error.add_note(
                f"local_files_only=True: only local folders and the Hugging Face cache were searched for "
                f"{name!r}. Download it first (`hf download {name}`) or pass its folder."
            )
        raise
    if missing := sorted(loading_info["missing_keys"]):
        # transformers fills missing weights with random values: scores or vectors would be noise.
        raise ValueError(
            f"{name!r} has no weights for {missing[:4]}{' ...' if len(missing) > 4 else ''}, which "
            f"{auto_class.__name__} needs. A reranker needs a Qwen3-Reranker checkpoint (with its output head); an "
            "embedding checkpoint belongs in Qwen3EmbedEngine."
        )
    model = model.to(spec.device).eval()
    if spec.quantization is not None:  # "int8", the one choice
        quantize_model(model)
    return model, tokenizer, why


_telemetry_lock = threading.Lock()


@contextmanager
def no_hub_lookups(local_files_only: bool) -> Iterator[None]:
    """With ``local_files_only``, keep huggingface_hub from reaching the Hub while it builds request headers.

    huggingface_hub (2.x) fetches an "agent harnesses" list from the Hub for its user-agent string even when the file
    itself is read from the local cache; that lookup is skipped when its telemetry is off, so it is switched off while
    a local-only load runs.
    """
    if not local_files_only:
        yield
        return
    from huggingface_hub import constants

    with _telemetry_lock:
        disabled = constants.HF_HUB_DISABLE_TELEMETRY
        constants.HF_HUB_DISABLE_TELEMETRY = True
        try:
            yield
        finally:
            constants.HF_HUB_DISABLE_TELEMETRY = disabled
