"""Device/dtype resolution, checkpoint loading and per-call meta shared by both engines."""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

if TYPE_CHECKING:
    from .forward import PackedRun

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, without asking whether this machine has it (a driver may lack the workers' GPU)."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'.") from error


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = parse_device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here; use device='cpu'.")
    if resolved.type not in ("cpu", "cuda"):
        try:  # other backends (mps, xpu, ...) run the same code where this torch build supports them
            torch.empty(0, device=resolved)
        except RuntimeError as error:
            raise ValueError(f"device={device!r} is not available here ({error}); use 'cpu' or 'cuda'.") from error
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on CUDA (fp16 can overflow in Qwen3), fp32 on CPU (bf16 matmuls are slow without native support)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(
        f"dtype={dtype!r} is not supported; use one of {sorted(DTYPES)}, or None for the device's default "
        "(bf16 on CUDA, fp32 on CPU)."
    )


def check_positive_int(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"{name}={value!r} is invalid; it must be {hint}.")


def check_pack_options(**options: int | None) -> None:
    """Fail when an adapter is built, not at its first call, on a bad ``max_length``/``max_tokens_per_pack``/...."""
    for name, value in options.items():
        check_positive_int(name, value, optional=name in ("max_docs_per_pack", "dimensions"))


def check_model_name(model: object) -> str:
    """A hub id or a local folder (``str`` or path-like) as a ``str``; ``TypeError`` for anything else."""
    if not isinstance(model, str | os.PathLike):
        raise TypeError(f"model must be a hub id or a local folder (str), got {type(model).__name__}.")
    return os.fspath(model)


def load_qwen3(
    auto_class: type,
    model_name_or_path: str,
    *,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    local_files_only: bool,
    revision: str | None,
    token: str | bool | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (safetensors, no remote code) on its device and dtype, and its tokenizer; refuses non-Qwen3 checkpoints."""
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    hub: dict[str, Any] = {
        "local_files_only": local_files_only,
        "revision": revision,
        "token": token,
        "trust_remote_code": False,
    }
    if _looks_like_a_path(str(model_name_or_path)) and not Path(model_name_or_path).expanduser().is_dir():
        raise FileNotFoundError(
            f"No model folder at {model_name_or_path!r}. Check the path, or pass a Hub id such as "
            "'Qwen/Qwen3-Reranker-0.6B'."
        )
    try:
        with no_hub_lookups(local_files_only):
            config = AutoConfig.from_pretrained(model_name_or_path, **hub)
            if config.model_type != "qwen3":
                raise ValueError(
                    f"{model_name_or_path!r} is a {config.model_type!r} checkpoint; this engine runs Qwen3 checkpoints "
                    "(model_type 'qwen3'), e.g. 'Qwen/Qwen3-Reranker-0.6B' or 'Qwen/Qwen3-Embedding-0.6B'."
                )
            tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **hub)
            model, loading_info = auto_class.from_pretrained(
                model_name_or_path, dtype=resolved_dtype, use_safetensors=True, output_loading_info=True, **hub
            )
    except OSError as error:
        if local_files_only:
            error.add_note(
                f"local_files_only=True: only local folders and the Hugging Face cache were searched for "
                f"{model_name_or_path!r}. Download it first (`hf download {model_name_or_path}`) or pass its folder."
            )
        raise
    if missing := sorted(loading_info["missing_keys"]):
        # transformers fills missing weights with random values: scores or vectors would be noise.
        raise ValueError(
            f"{model_name_or_path!r} has no weights for {missing[:4]}{' ...' if len(missing) > 4 else ''}, which "
            f"{auto_class.__name__} needs. A reranker needs a Qwen3-Reranker checkpoint (with its output head); an "
            "embedding checkpoint belongs in Qwen3EmbedEngine."
        )
    return model.to(resolved_device).eval(), tokenizer


def _looks_like_a_path(name: str) -> bool:
    """Hub ids are 'name' or 'owner/name'; anything absolute, relative or deeper is meant as a local folder."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


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


E = TypeVar("E", bound="EngineOptions")


class EngineOptions:
    """Per-engine options that can change without reloading the model (see :meth:`with_options`)."""

    option_names: tuple[str, ...] = ()

    def _set_options(self, *args: Any) -> None:
        raise NotImplementedError

    def with_options(self: E, **changes: Any) -> E:
        """A copy sharing this engine's loaded model and tokenizer, with some of ``option_names`` changed."""
        unknown = set(changes) - set(self.option_names)
        if unknown:
            raise TypeError(f"with_options() got unknown options {sorted(unknown)}; valid: {list(self.option_names)}.")
        clone = copy.copy(self)
        clone._set_options(*(changes.get(name, getattr(self, name)) for name in self.option_names))
        return clone


@dataclass(frozen=True)
class RunMeta:
    """What one engine call computed."""

    documents: int  # inputs in the call (documents, or texts for the embedder), duplicates included
    unique_documents: int  # inputs actually computed after dedup
    truncated_documents: int  # inputs cut to fit max_length (by the official rule)
    packs: int  # forward passes that held some of this call's inputs (concurrent calls share packs)
    tokens_computed: int  # this call's tokens through the model: its prefixes once per pack, plus its items
    padding_free_tokens: int  # tokens a per-pair path would compute without padding (prefix repeated per input)
    elapsed_ms: float  # the whole call: checks, tokenization, waiting and computing
    queued_ms: float  # waiting for the model while packs of other calls ran
    compute_ms: float  # wall time of the packs this call took part in
    device: str
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_meta(run: PackedRun, start: float, *, device: torch.device, dtype: torch.dtype, **counts: int) -> RunMeta:
    """Meta of a call that started at ``start`` (``time.perf_counter()``) and got ``run`` from the scheduler."""
    return RunMeta(
        **counts,
        packs=run.packs,
        tokens_computed=run.tokens_computed,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        queued_ms=run.queued_s * 1000,
        compute_ms=run.compute_s * 1000,
    )


Progress = Callable[[int, int], None]


@contextmanager
def progress_callback(progress: bool | Progress, total: int, desc: str = "Embedding") -> Iterator[Progress | None]:
    """``True``: a tqdm bar over items (on stderr); a callable: used as is; ``False``: nothing."""
    if callable(progress) or not progress:
        yield progress or None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="text") as bar:
        yield lambda done, _total: bar.update(done - bar.n)
