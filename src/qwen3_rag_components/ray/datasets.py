"""``embed_dataset`` and ``rerank_dataset``: the callables in an actor pool, every argument checked in the driver."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import ray.data

from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_RERANKER, check_positive_int
from .actor import EngineActor
from .callables import Qwen3RayEmbedder, Qwen3RayReranker
from .columns import check_output_column, column_shape, missing_column, score_column


def embed_dataset(
    ds: ray.data.Dataset,
    *,
    column: str,
    model: str | os.PathLike[str] = DEFAULT_EMBEDDER,
    batch_size: int = 256,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    map_batches_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """``ds`` with an embedding column added by an actor pool of :class:`Qwen3RayEmbedder` (lazy: nothing runs yet).

    All arguments are checked here, in the driver, before any actor starts.

    Args:
        ds: The dataset; ``column`` must hold strings.
        column: The text column to embed.
        model: Hub id or local folder of a Qwen3-Embedding checkpoint; a folder must exist on every node.
        batch_size: Rows per engine call; give it at least a few packs' worth of tokens (``max_tokens_per_pack``).
        concurrency: Actors in the pool: ``n``, or ``(min, max)`` to autoscale; ``None``: Ray's default (autoscale
            from 1). On GPUs, the number of GPUs to use.
        num_gpus: GPUs per actor (``1`` on a GPU cluster).
        num_cpus: CPUs per actor; on CPU, Ray sets each actor's ``OMP_NUM_THREADS`` (torch's thread count) to it.
        map_batches_kwargs: More keyword arguments for ``Dataset.map_batches`` (``memory``, ``runtime_env``, ...).
        **options: The other :class:`Qwen3RayEmbedder` arguments (``output_column``, ``kind``, ``dimensions``,
            ``normalize``, ``precision``, ``ranges``, ``instruction``, ``device``, ``dtype``, ``local_files_only``,
            ``max_tokens_per_pack``, ...).

    Returns:
        The lazy dataset with the embedding column (by default ``"embedding"``).

    Example:
        >>> ds = ray.data.read_parquet("passages/")
        >>> ds = embed_dataset(ds, column="text", dimensions=256, concurrency=4, num_gpus=1)
        >>> ds.write_parquet("passages-embedded/")
    """
    arguments = Qwen3RayEmbedder.check_arguments(model=_local_folder(model), column=column, **options)
    _check_columns(ds, {"column": column}, arguments["output_column"], arguments["meta_column"])
    return _map(ds, Qwen3RayEmbedder, arguments, batch_size, concurrency, num_gpus, num_cpus, map_batches_kwargs)


def rerank_dataset(
    ds: ray.data.Dataset,
    *,
    query_column: str,
    documents_column: str,
    model: str | os.PathLike[str] = DEFAULT_RERANKER,
    batch_size: int = 64,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    map_batches_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """``ds`` with a score column added by an actor pool of :class:`Qwen3RayReranker` (lazy: nothing runs yet).

    All arguments are checked here, in the driver, before any actor starts.

    Args:
        ds: The dataset: a query per row, and a document (string) or a list of candidate documents per row.
        query_column: The query column.
        documents_column: The document column (strings, or lists of strings).
        model: Hub id or local folder of a Qwen3-Reranker checkpoint; a folder must exist on every node.
        batch_size: Rows per engine call; give it at least a few packs' worth of documents.
        concurrency: Actors in the pool: ``n``, or ``(min, max)`` to autoscale; ``None``: Ray's default (autoscale
            from 1). On GPUs, the number of GPUs to use.
        num_gpus: GPUs per actor (``1`` on a GPU cluster).
        num_cpus: CPUs per actor; on CPU, Ray sets each actor's ``OMP_NUM_THREADS`` (torch's thread count) to it.
        map_batches_kwargs: More keyword arguments for ``Dataset.map_batches`` (``memory``, ``runtime_env``, ...).
        **options: The other :class:`Qwen3RayReranker` arguments (``output_column``, ``instruction``, ``device``,
            ``dtype``, ``local_files_only``, ``max_tokens_per_pack``, ``max_docs_per_pack``, ...).

    Returns:
        The lazy dataset with the score column (``"score"`` for one document per row, ``"scores"`` for lists).

    Example:
        >>> pairs = ray.data.read_parquet("qrels-with-text/")  # columns: qid, docid, query, passage, label
        >>> scored = rerank_dataset(pairs, query_column="query", documents_column="passage", concurrency=2)
    """
    arguments = Qwen3RayReranker.check_arguments(
        model=_local_folder(model), query_column=query_column, documents_column=documents_column, **options
    )
    columns = {"query_column": query_column, "documents_column": documents_column}
    _check_columns(ds, columns, arguments["output_column"], arguments["meta_column"])
    return _map(ds, Qwen3RayReranker, arguments, batch_size, concurrency, num_gpus, num_cpus, map_batches_kwargs)


def _map(
    ds: ray.data.Dataset,
    fn: type[EngineActor],
    arguments: dict[str, Any],
    batch_size: int,
    concurrency: int | tuple[int, int] | None,
    num_gpus: float | None,
    num_cpus: float | None,
    map_batches_kwargs: dict[str, Any] | None,
) -> ray.data.Dataset:
    check_positive_int("batch_size", batch_size)
    return ds.map_batches(
        fn,
        fn_constructor_kwargs=arguments,
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=_actor_pool(concurrency),
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        **(map_batches_kwargs or {}),
    )


def _actor_pool(concurrency: int | tuple[int, int] | None) -> ray.data.ActorPoolStrategy | None:
    if concurrency is None:
        return None  # Ray's default for a callable class: an actor pool autoscaling from 1
    if isinstance(concurrency, tuple) and len(concurrency) == 2:
        low, high = concurrency
        check_positive_int("concurrency[0]", low)
        check_positive_int("concurrency[1]", high)
        if low > high:
            raise ValueError(f"concurrency={concurrency!r} has min > max; use (min, max) with min <= max.")
        return ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency={concurrency!r} is invalid; use a positive int, (min, max), or None.")
    return ray.data.ActorPoolStrategy(size=concurrency)


def _local_folder(model: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """An existing folder as an absolute path: actors do not run in the driver's working directory."""
    if isinstance(model, str | os.PathLike) and os.path.isdir(model):
        return os.path.abspath(model)
    return model


def _check_columns(
    ds: ray.data.Dataset, columns: dict[str, str], output_column: str | None, meta_column: str | None
) -> None:
    """Check the input and output columns against the schema when it is known without running anything.

    ``output_column=None`` is the reranker's default, named after the documents column's shape.
    """
    schema = ds.schema(fetch_if_missing=False)  # None when only running the plan would tell
    if schema is None:
        return
    names, types = list(schema.names), dict(zip(schema.names, schema.types, strict=True))
    shapes = {}
    for parameter, column in columns.items():
        if column not in names:
            raise ValueError(missing_column(parameter, column, names))
        if isinstance(types[column], pa.DataType):  # else a pandas-backed block: typed once converted to Arrow
            shapes[parameter] = column_shape(parameter, column, types[column])
    if output_column is None and "documents_column" in shapes:
        output_column = score_column(None, shapes["documents_column"])
    check_output_column(output_column, names)
    check_output_column(meta_column, names, "meta_column")
