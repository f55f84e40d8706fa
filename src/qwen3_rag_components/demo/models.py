"""Which models the demo runs: the ones asked for when they can load without a network wait, else random ones."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from ..engine.options import check_model_name, is_local_path

DEFAULT_RANDOM_GEOMETRY = "0.6b-2layers"
# Random fallback: layer geometry name -> Qwen3Geometry fields (hidden, mlp, layers, heads, kv heads, head_dim).
RANDOM_GEOMETRIES = {
    DEFAULT_RANDOM_GEOMETRY: (1024, 3072, 2, 16, 8, 128),  # the real 0.6B width, 2 of its 28 layers
    "tiny": (64, 128, 2, 4, 2, 16),  # for tests: seconds, not minutes
}


class DemoError(Exception):
    """A missing optional dependency: the message says what to install."""


@dataclass(frozen=True)
class Models:
    embedder: str
    reranker: str
    local_files_only: bool
    random: bool = False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A plain TCP connect to the Hub endpoint: fails in milliseconds on a machine without network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy, let the loader try
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError):
        return False
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _unavailable(name: str, offline: bool) -> str | None:
    """Why ``name`` cannot be loaded without a network wait, or None when it can (or may) be loaded."""
    if Path(name).is_dir():
        return None
    if is_local_path(name):
        return f"{name} is not a local folder"
    if _in_hub_cache(name):
        return None
    return f"{name} is not in the Hugging Face cache" if offline else None


def choose_models(embedder: str, reranker: str, local_files_only: bool) -> tuple[Models, str | None]:
    """The models to load, and the reason to fall back to random checkpoints (None: no need)."""
    embedder, reranker = check_model_name(embedder), check_model_name(reranker)  # "~/x" expanded, as when loading
    needs_hub = any(not Path(name).is_dir() and not is_local_path(name) for name in (embedder, reranker))
    offline = local_files_only or (needs_hub and not _hub_reachable())
    reasons = [reason for name in (embedder, reranker) if (reason := _unavailable(name, offline))]
    if reasons and offline and not local_files_only:
        reasons.append("no network access to the Hub")
    return Models(embedder, reranker, offline), "; ".join(reasons) or None


def models_or_random(
    embedder: str, reranker: str, local_files_only: bool, *, cache_dir: Path | None, geometry: str, notice: TextIO
) -> Models:
    """:func:`choose_models`, falling back to :func:`random_models` with a one-line notice that says why."""
    models, reason = choose_models(embedder, reranker, local_files_only)
    if reason is None:
        return models
    print(f"Official models unavailable ({reason}): running on RANDOM {geometry} Qwen3 checkpoints.", file=notice)
    return random_models(cache_dir, geometry)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qwen3_rag_components" / "demo"


def random_models(cache_dir: Path | None, geometry_name: str) -> Models:
    """Random Qwen3 checkpoints of the chosen geometry, written once under ``cache_dir`` and reused afterwards."""
    try:
        from ..testing import Qwen3Geometry, write_embedding_checkpoint, write_reranker_checkpoint
    except ImportError as error:
        raise DemoError(
            f"The random fallback needs the test extra ({error}); install it with "
            "pip install 'qwen3-rag-components[test]', or pass --embedder/--reranker folders."
        ) from error
    geometry = Qwen3Geometry(*RANDOM_GEOMETRIES[geometry_name])
    root = (cache_dir or cache_root()) / geometry_name
    writers: dict[str, Callable[[Path], Path]] = {
        "embedder": lambda path: write_embedding_checkpoint(path, geometry=geometry, seed=0),
        "reranker": lambda path: write_reranker_checkpoint(path, geometry=geometry, tied=True, seed=0),
    }
    for kind, write in writers.items():
        target = root / kind
        if not (target / "config.json").is_file():
            print(f"Writing a random {geometry_name} {kind} checkpoint to {target} (once)", file=sys.stderr)
            partial = root / f"{kind}.partial-{os.getpid()}"
            write(partial)  # written aside, then renamed: an interrupted run never leaves a half checkpoint
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
    return Models(str(root / "embedder"), str(root / "reranker"), local_files_only=True, random=True)
