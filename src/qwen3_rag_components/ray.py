"""Ray Data: embed and rerank datasets across a cluster with the packed engine (extra ``ray``).

``Qwen3RayEmbedder`` and ``Qwen3RayReranker`` are callable classes for ``Dataset.map_batches``: Ray runs them in an
actor pool, each actor loads its engine once (through :func:`qwen3_rag_components.engine.get_engine`, the per-process
engine cache) and hands every batch to it whole, so one engine call packs the batch under its token budget.
:func:`embed_dataset` and :func:`rerank_dataset` check their arguments in the driver, before any actor starts, and
return the lazy dataset. See ``docs/scale-out.md``.

Needs the ``ray`` extra: ``pip install "qwen3-rag-components[ray]"``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

try:
    import pyarrow as pa
    import ray.data
    from ray.data.extensions import ArrowTensorArray
except ModuleNotFoundError as error:
    if error.name is None or error.name.split(".")[0] not in ("ray", "pyarrow"):
        raise
    raise ImportError('qwen3_rag_components.ray needs Ray Data: pip install "qwen3-rag-components[ray]"') from error

import torch

from .engine import Qwen3EmbedEngine, Qwen3RerankEngine
from .engine.cache import get_adapter_engine
from .engine.embed import DEFAULT_MAX_TOKENS_PER_PACK as EMBED_TOKENS_PER_PACK
from .engine.embed import check_dimensions
from .engine.loading import check_model_name, check_pack_options, check_positive_int, parse_device, resolve_dtype
from .engine.prompts import check_instruction
from .engine.rerank import DEFAULT_MAX_TOKENS_PER_PACK as RERANK_TOKENS_PER_PACK

__all__ = ["Qwen3RayEmbedder", "Qwen3RayReranker", "embed_dataset", "rerank_dataset"]

DEFAULT_EMBEDDER = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_RERANKER = "Qwen/Qwen3-Reranker-0.6B"
EMBED_KINDS = ("documents", "queries")


class _EngineActor:
    """Shared by both callables: argument checks, the engine options taken from same-named attributes, loading."""

    engine_class: ClassVar[type[Qwen3EmbedEngine] | type[Qwen3RerankEngine]]
    _engine: Any

    @classmethod
    def check_arguments(cls, **arguments: Any) -> dict[str, Any]:
        """Check constructor arguments without loading anything; returns them with the defaults filled in.

        Raises:
            TypeError: an unknown argument, or a value of the wrong type.
            ValueError: a value out of range (the message says which values are accepted).
        """
        signature = inspect.signature(cls)
        try:
            bound = signature.bind(**arguments)
        except TypeError as error:  # an unknown or a missing argument
            raise TypeError(f"{cls.__name__}: {error}; its arguments are {list(signature.parameters)}.") from None
        bound.apply_defaults()
        cls._check(bound.arguments)
        return bound.arguments

    @classmethod
    def _check(cls, arguments: Mapping[str, Any]) -> None:
        check_model_name(arguments["model"])
        if arguments["device"] is not None:
            parse_device(arguments["device"])  # only parsed: the driver may have no GPU while the workers do
        resolve_dtype(arguments["dtype"], torch.device("cpu"))  # raises ValueError listing the supported names
        pack_options = ("max_length", "max_tokens_per_pack", "max_docs_per_pack", "dimensions")
        check_pack_options(**{name: arguments[name] for name in pack_options if name in arguments})
        check_instruction(arguments["instruction"], default="")
        columns = {name: value for name, value in arguments.items() if name.endswith("column")}
        for name, value in columns.items():
            if not (isinstance(value, str) or (value is None and name == "output_column")):
                raise TypeError(f"{name} must be a column name (str), got {type(value).__name__}.")
        output = arguments["output_column"]
        clashes = [name for name, value in columns.items() if name != "output_column" and value == output]
        if clashes:
            raise ValueError(
                f"output_column={output!r} is also the input {clashes[0]}; give the output column another name."
            )

    def _load_engine(self) -> None:
        """The shared engine of this process for the model and placement, with this object's engine options."""
        self._engine = get_adapter_engine(self, device=self.device, token=self.token)

    def _check_batch(self, batch: object, columns: dict[str, str]) -> dict[str, str]:
        """Raise unless ``batch`` is a pyarrow table with the input columns, typed right and without nulls.

        Returns the shape (``"string"`` or ``"list"``) of each input column, keyed by parameter name.
        """
        if not isinstance(batch, pa.Table):
            raise TypeError(
                f"{type(self).__name__} takes pyarrow batches, got {type(batch).__name__}: pass "
                "batch_format='pyarrow' to map_batches (numpy batches turn list columns into pickled objects)."
            )
        shapes = {}
        for parameter, column in columns.items():
            if column not in batch.column_names:
                raise ValueError(_missing_column(parameter, column, batch.column_names))
            shapes[parameter] = _column_shape(parameter, column, batch.schema.field(column).type)
            nulls = batch.column(column).null_count
            if nulls:
                raise ValueError(
                    f"{parameter}={column!r} has {nulls} null value(s) in this batch; drop or fill them first, "
                    f"e.g. ds.filter(expr=ray.data.expressions.col({column!r}).is_not_null())."
                )
        return shapes


class Qwen3RayEmbedder(_EngineActor):
    """Embeds a text column of each batch into a float32 ``[rows, dim]`` tensor column; for ``Dataset.map_batches``.

    Vectors are the engine's (:meth:`Qwen3EmbedEngine.encode`): documents as they are, queries as
    ``"Instruct: {instruction}\\nQuery:{query}"``, cut to ``dimensions`` (MRL) and L2-normalised unless
    ``normalize=False``. Each batch is one engine call, so its texts are packed together under
    ``max_tokens_per_pack``. Every input column is kept; the output column is added at the end, rows in batch order.
    Use ``batch_format="pyarrow"`` (or :func:`embed_dataset`, which sets it).

    Args:
        model: Hub id or local folder of a Qwen3-Embedding checkpoint; a folder must exist on every node.
        column: The text column to embed.
        output_column: The column to add (``ArrowTensorTypeV2``, float32, shape ``(dim,)``).
        kind: ``"documents"`` (embedded as they are) or ``"queries"`` (with the query instruction).
        dimensions: Keep the first ``dimensions`` values (1 to the hidden size); ``None`` keeps them all.
        normalize: L2-normalise each vector after cutting it.
        instruction: Query instruction (``kind="queries"`` only); ``None`` uses the official one.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` picks CUDA when the actor sees a GPU, else CPU.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or short names); ``None``: bf16 on CUDA, fp32 on CPU.
        local_files_only: Never download; use the folder or the Hugging Face cache of each node.
        revision: Hub revision (branch, tag or commit).
        token: Hugging Face token (sent to every actor with its arguments); ``None`` uses each node's ``HF_TOKEN``.
        max_length: Tokens per text including the appended ``<|endoftext|>``; longer texts are cut.
        max_tokens_per_pack: Token budget of one forward pass.

    Example:
        >>> ds = ray.data.read_parquet("passages/")
        >>> ds = ds.map_batches(
        ...     Qwen3RayEmbedder,
        ...     fn_constructor_kwargs={"model": "Qwen/Qwen3-Embedding-0.6B", "column": "text"},
        ...     batch_format="pyarrow",
        ...     batch_size=256,
        ...     compute=ray.data.ActorPoolStrategy(size=4),
        ...     num_gpus=1,
        ... )
    """

    engine_class = Qwen3EmbedEngine

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_EMBEDDER,
        *,
        column: str,
        output_column: str = "embedding",
        kind: str = "documents",
        dimensions: int | None = None,
        normalize: bool = True,
        instruction: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        max_length: int = 8192,
        max_tokens_per_pack: int = EMBED_TOKENS_PER_PACK,
    ) -> None:
        self.model = check_model_name(model)
        self.column = column
        self.output_column = output_column
        self.kind = kind
        self.dimensions = dimensions
        self.normalize = normalize
        self.instruction = instruction
        self.device = device
        self.dtype = dtype
        self.local_files_only = local_files_only
        self.revision = revision
        self.token = token
        self.max_length = max_length
        self.max_tokens_per_pack = max_tokens_per_pack
        self._check(vars(self))
        self._load_engine()
        check_dimensions(dimensions, self._engine.hidden_size)

    @classmethod
    def _check(cls, arguments: Mapping[str, Any]) -> None:
        super()._check(arguments)
        kind = arguments["kind"]
        if kind not in EMBED_KINDS:
            raise ValueError(
                f"kind={kind!r} is not supported; use 'documents' (embedded as they are) or 'queries' "
                "(with the query instruction)."
            )
        if kind == "documents" and arguments["instruction"] is not None:
            raise ValueError(
                "instruction applies to queries only; documents are embedded without one. "
                "Use kind='queries' to embed queries with it."
            )

    @classmethod
    def check_arguments(cls, **arguments: Any) -> dict[str, Any]:
        """As for every callable, plus ``dimensions`` against the hidden size when the checkpoint config is at hand."""
        arguments = super().check_arguments(**arguments)
        hidden_size = _hidden_size(arguments["model"], arguments["revision"])
        if hidden_size is not None:
            check_dimensions(arguments["dimensions"], hidden_size)
        return arguments

    def __call__(self, batch: pa.Table) -> pa.Table:
        """The batch with ``output_column`` added: one float32 vector per row, in row order."""
        self._check_batch(batch, {"column": self.column})
        _check_output_column(self.output_column, batch.column_names)
        result = self._engine.encode(
            batch.column(self.column).to_pylist(),
            is_query=self.kind == "queries",
            dimensions=self.dimensions,
            normalize=self.normalize,
        )
        # embeddings: [rows, dim] float32 -> a fixed-shape tensor column (numpy batches of it are [rows, dim] again)
        return batch.append_column(self.output_column, ArrowTensorArray.from_numpy(result.embeddings))


class Qwen3RayReranker(_EngineActor):
    """Scores each row's query against its document(s); for ``Dataset.map_batches``.

    Two row shapes, told apart by the type of ``documents_column``:

    - a list of candidate documents per row (``list<string>``): the output is a list of scores, in the same order;
    - one document per row (``string``), as in offline-eval pair tables: the output is one float.

    Scores are the engine's ``P(yes)`` (:meth:`Qwen3RerankEngine.score_batch`). A batch is one engine call, which
    computes each distinct query's prompt prefix once per pack for all the documents of its rows. Every input column
    is kept; the output column is added at the end, rows in batch order. Use ``batch_format="pyarrow"`` (or
    :func:`rerank_dataset`, which sets it).

    Args:
        model: Hub id or local folder of a Qwen3-Reranker checkpoint; a folder must exist on every node.
        query_column: The query column (strings).
        documents_column: The document column: strings, or lists of strings.
        output_column: The column to add (float64, or list of float64); ``None``: ``"score"`` for one document per
            row, ``"scores"`` for lists.
        instruction: Task instruction of the prompt; ``None`` uses the official one.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` picks CUDA when the actor sees a GPU, else CPU.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or short names); ``None``: bf16 on CUDA, fp32 on CPU.
        local_files_only: Never download; use the folder or the Hugging Face cache of each node.
        revision: Hub revision (branch, tag or commit).
        token: Hugging Face token (sent to every actor with its arguments); ``None`` uses each node's ``HF_TOKEN``.
        max_length: Tokens per prompt (the official 8192); longer documents are cut from their end.
        max_tokens_per_pack: Token budget of one forward pass.
        max_docs_per_pack: Cap on documents per forward pass; ``None``: no cap.

    Example:
        >>> ds = ray.data.from_items([{"qid": 1, "query": "capital of China?", "passages": ["Beijing.", "Gravity."]}])
        >>> ds = ds.map_batches(
        ...     Qwen3RayReranker,
        ...     fn_constructor_kwargs={"query_column": "query", "documents_column": "passages"},
        ...     batch_format="pyarrow",
        ...     batch_size=32,
        ...     compute=ray.data.ActorPoolStrategy(size=2),
        ... )
        >>> ds.take_all()[0]["scores"]  # one P(yes) per passage
    """

    engine_class = Qwen3RerankEngine

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_RERANKER,
        *,
        query_column: str,
        documents_column: str,
        output_column: str | None = None,
        instruction: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        max_length: int = 8192,
        max_tokens_per_pack: int = RERANK_TOKENS_PER_PACK,
        max_docs_per_pack: int | None = None,
    ) -> None:
        self.model = check_model_name(model)
        self.query_column = query_column
        self.documents_column = documents_column
        self.output_column = output_column
        self.instruction = instruction
        self.device = device
        self.dtype = dtype
        self.local_files_only = local_files_only
        self.revision = revision
        self.token = token
        self.max_length = max_length
        self.max_tokens_per_pack = max_tokens_per_pack
        self.max_docs_per_pack = max_docs_per_pack
        self._check(vars(self))
        self._load_engine()

    def __call__(self, batch: pa.Table) -> pa.Table:
        """The batch with the score column added, in row order."""
        columns = {"query_column": self.query_column, "documents_column": self.documents_column}
        shape = self._check_batch(batch, columns)["documents_column"]
        one_per_row = shape == "string"
        output_column = _score_column(self.output_column, shape)
        _check_output_column(output_column, batch.column_names)
        queries: list[str] = batch.column(self.query_column).to_pylist()
        documents = batch.column(self.documents_column).to_pylist()
        candidates: list[list[str]] = [[doc] for doc in documents] if one_per_row else documents

        # One request per row; the engine computes each distinct query's prefix once per pack for all its rows.
        scores = self._engine.score_batch(list(zip(queries, candidates, strict=True))) if queries else []
        if one_per_row:
            column = pa.array([row_scores[0] for row_scores in scores], type=pa.float64())
        else:
            column = pa.array(scores, type=pa.list_(pa.float64()))
        return batch.append_column(output_column, column)


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
            ``normalize``, ``instruction``, ``device``, ``dtype``, ``local_files_only``, ``max_tokens_per_pack``, ...).

    Returns:
        The lazy dataset with the embedding column (by default ``"embedding"``).

    Example:
        >>> ds = ray.data.read_parquet("passages/")
        >>> ds = embed_dataset(ds, column="text", dimensions=256, concurrency=4, num_gpus=1)
        >>> ds.write_parquet("passages-embedded/")
    """
    arguments = Qwen3RayEmbedder.check_arguments(model=_local_folder(model), column=column, **options)
    _check_columns(ds, {"column": column}, arguments["output_column"])
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
    _check_columns(ds, columns, arguments["output_column"])
    return _map(ds, Qwen3RayReranker, arguments, batch_size, concurrency, num_gpus, num_cpus, map_batches_kwargs)


# --------------------------------------------------------------------------------------------- helpers


def _map(
    ds: ray.data.Dataset,
    fn: type[_EngineActor],
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


def _check_columns(ds: ray.data.Dataset, columns: dict[str, str], output_column: str | None) -> None:
    """Check the input columns and the output column against the schema when it is known without running anything.

    ``output_column=None`` is the reranker's default, named after the documents column's shape.
    """
    schema = ds.schema(fetch_if_missing=False)  # None when only running the plan would tell
    if schema is None:
        return
    names, types = list(schema.names), dict(zip(schema.names, schema.types, strict=True))
    shapes = {}
    for parameter, column in columns.items():
        if column not in names:
            raise ValueError(_missing_column(parameter, column, names))
        if isinstance(types[column], pa.DataType):  # else a pandas-backed block: typed once converted to Arrow
            shapes[parameter] = _column_shape(parameter, column, types[column])
    if output_column is None and "documents_column" in shapes:
        output_column = _score_column(None, shapes["documents_column"])
    _check_output_column(output_column, names)


def _score_column(output_column: str | None, documents_shape: str) -> str:
    """The reranker's output column: as given, else ``"score"`` for one document per row, ``"scores"`` for lists."""
    return output_column or ("score" if documents_shape == "string" else "scores")


def _column_shape(parameter: str, column: str, column_type: pa.DataType) -> str:
    """``"string"``, or ``"list"`` (``documents_column`` only): a ``TypeError`` naming the column otherwise."""
    shape = _documents_shape(column_type)
    if parameter == "documents_column" and shape is None:
        raise TypeError(
            f"documents_column={column!r} holds {column_type}; it must hold strings (one document per row) "
            "or lists of strings (candidate documents per row)."
        )
    if parameter != "documents_column" and shape != "string":
        raise TypeError(f"{parameter}={column!r} holds {column_type}; it must hold strings.")
    return shape


def _documents_shape(column_type: pa.DataType) -> str | None:
    """``"string"`` for a string column, ``"list"`` for a list of strings (or of nulls: all lists empty), else None."""
    if pa.types.is_string(column_type) or pa.types.is_large_string(column_type):
        return "string"
    is_list = pa.types.is_list(column_type) or pa.types.is_large_list(column_type)
    if is_list or pa.types.is_fixed_size_list(column_type):
        value_type = column_type.value_type
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or pa.types.is_null(value_type):
            return "list"
    return None


def _missing_column(parameter: str, column: str, names: list[str]) -> str:
    return f"{parameter}={column!r} is not a column of the dataset; its columns are {names}."


def _check_output_column(column: str | None, names: list[str]) -> None:
    if column is not None and column in names:
        raise ValueError(
            f"output_column={column!r} is already a column of the dataset; pass another output_column, or drop "
            f"it first with ds.drop_columns([{column!r}])."
        )


def _hidden_size(model: str | os.PathLike[str], revision: str | None) -> int | None:
    """The checkpoint's hidden size when its config.json is at hand (a local folder or the Hub cache), else None."""
    path = Path(model) / "config.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(os.fspath(model), "config.json", revision=revision)
        except ValueError:  # not a hub id (HFValidationError)
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
