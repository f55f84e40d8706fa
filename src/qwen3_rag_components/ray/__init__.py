"""Ray Data: embed and rerank datasets across a cluster with the packed engine (extra ``ray``).

``Qwen3RayEmbedder`` and ``Qwen3RayReranker`` are callable classes for ``Dataset.map_batches``: Ray runs them in an
actor pool, each actor loads its engine once (through :func:`qwen3_rag_components.engine.shared_engine`, the
per-process engine cache) and hands every batch to it whole, so one engine call packs the batch under its token
budget. :func:`embed_dataset` and :func:`rerank_dataset` check their arguments in the driver, before any actor
starts, and return the lazy dataset. See ``docs/scale-out.md``.

Needs the ``ray`` extra: ``pip install "qwen3-rag-components[ray]"``.
"""

from __future__ import annotations

try:
    import pyarrow  # noqa: F401
    import ray.data  # noqa: F401
except ModuleNotFoundError as error:
    if error.name is None or error.name.split(".")[0] not in ("ray", "pyarrow"):
        raise
    raise ImportError('qwen3_rag_components.ray needs Ray Data: pip install "qwen3-rag-components[ray]"') from error

from .callables import Qwen3RayEmbedder, Qwen3RayReranker
from .datasets import embed_dataset, rerank_dataset

__all__ = ["Qwen3RayEmbedder", "Qwen3RayReranker", "embed_dataset", "rerank_dataset"]
