"""The callables for ``Dataset.map_batches``: one engine per actor, one engine call per batch."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
from ray.data.extensions import ArrowTensorArray

from ..engine import EmbedOptions, LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, RerankOptions
from ..engine.heads import check_dimensions
from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_MAX_LENGTH, DEFAULT_MAX_TOKENS_PER_PACK, DEFAULT_RERANKER
from ..engine.precision import RangesLike, check_fixed_ranges, check_ranges_cover
from .actor import EngineActor, hidden_size
from .columns import check_batch, check_column_arguments, check_output_column, score_column

EMBED_KINDS = ("documents", "queries")


class Qwen3RayEmbedder(EngineActor):
    """Embeds a text column of each batch into a ``[rows, dim]`` tensor column (float32, or the ``precision``); for
    ``Dataset.map_batches``.

    Vectors are the engine's (:meth:`Qwen3EmbedEngine.encode`): documents as they are, queries as
    ``"Instruct: {instruction}\\nQuery:{query}"``, cut to ``dimensions`` (MRL) and L2-normalised unless
    ``normalize=False``. Each batch is one engine call, so its texts are packed together under
    ``max_tokens_per_pack``. Every input column is kept; the output column is added at the end, rows in batch order.
    Use ``batch_format="pyarrow"`` (or :func:`embed_dataset`, which sets it).

    Args:
        model: Hub id or local folder of a Qwen3-Embedding checkpoint; a folder must exist on every node.
        column: The text column to embed.
        output_column: The column to add (``ArrowTensorTypeV2``, float32, shape ``(dim,)``; see ``precision``).
        kind: ``"documents"`` (embedded as they are) or ``"queries"`` (with the query instruction).
        dimensions: Keep the first ``dimensions`` values (1 to the hidden size); ``None`` keeps them all.
        normalize: L2-normalise each vector after cutting it.
        precision: ``"float32"``, or sentence-transformers' quantized forms of the vectors: ``"int8"``/``"uint8"``
            (shape ``(dim,)``, over ``ranges``), ``"binary"`` (int8)/``"ubinary"`` (uint8), shape ``(ceil(dim / 8),)``.
        ranges: The ``[2, dim]`` minima and maxima per dimension that int8/uint8 scale over
            (``quantization_ranges(calibration_vectors).tolist()``); required for them, since every batch would
            otherwise be scaled over its own vectors.
        instruction: Query instruction (``kind="queries"`` only); ``None`` uses the official one.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` picks CUDA when the actor sees a GPU, else CPU.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or short names); ``None``: bf16 on CUDA and on CPUs
            where bf16 measures faster, else fp32.
        quantization: ``"int8"`` (CPU only): int8 weights and activations in the projections of every layer but
            the first; ``None``: everything in ``dtype``.
        local_files_only: Never download; use the folder or the Hugging Face cache of each node.
        revision: Hub revision (branch, tag or commit).
        token: Hugging Face token (sent to every actor with its arguments); ``None`` uses each node's ``HF_TOKEN``.
        max_length: Tokens per text including the appended ``<|endoftext|>``; longer texts are cut.
        max_tokens_per_pack: Token budget of one forward pass.
        meta_column: A column to add with the batch's ``RunMeta`` (a struct: packs, tokens, timings, device, ...),
            the same for every row of the batch; ``None``: no meta column.

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

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_EMBEDDER,
        *,
        column: str,
        output_column: str = "embedding",
        kind: str = "documents",
        dimensions: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        ranges: RangesLike | None = None,
        instruction: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        quantization: str | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK,
        meta_column: str | None = None,
    ) -> None:
        check_fixed_ranges(precision, ranges, "Qwen3RayEmbedder quantizes each batch on its own")
        if kind not in EMBED_KINDS:
            raise ValueError(
                f"kind={kind!r} is not supported; use 'documents' (embedded as they are) or 'queries' "
                "(with the query instruction)."
            )
        if kind == "documents" and instruction is not None:
            raise ValueError(
                "instruction applies to queries only; documents are embedded without one. "
                "Use kind='queries' to embed queries with it."
            )
        check_column_arguments({"column": column}, {"output_column": output_column, "meta_column": meta_column})
        self.column, self.output_column, self.kind = column, output_column, kind
        options = EmbedOptions(
            instruction=instruction,
            dimensions=dimensions,
            normalize=normalize,
            precision=precision,
            ranges=ranges,
            max_length=max_length,
            max_tokens_per_pack=max_tokens_per_pack,
        )
        spec = LoadSpec(model, device, dtype, local_files_only, revision, token, quantization)
        self._hold(Qwen3EmbedEngine, spec, options, meta_column)

    @classmethod
    def check_arguments(cls, **arguments: Any) -> dict[str, Any]:
        """As for every callable, plus ``dimensions`` against the hidden size when the checkpoint config is at hand."""
        arguments = super().check_arguments(**arguments)
        size = hidden_size(arguments["model"], arguments["revision"])
        if size is not None:
            check_dimensions(arguments["dimensions"], size)
            if arguments["ranges"] is not None:
                check_ranges_cover(arguments["ranges"], arguments["dimensions"] or size)
        return arguments

    def __call__(self, batch: pa.Table) -> pa.Table:
        """The batch with ``output_column`` added: one vector per row (float32, or the ``precision``), in row
        order."""
        check_batch(type(self).__name__, batch, {"column": self.column})
        check_output_column(self.output_column, batch.column_names)
        check_output_column(self.meta_column, batch.column_names, "meta_column")
        result = self.holder.engine.encode(batch.column(self.column).to_pylist(), is_query=self.kind == "queries")
        # embeddings: [rows, dim] float32 -> a fixed-shape tensor column (numpy batches of it are [rows, dim] again)
        batch = batch.append_column(self.output_column, ArrowTensorArray.from_numpy(result.embeddings))
        return self._with_meta(batch, result.meta)


class Qwen3RayReranker(EngineActor):
    """Scores each row's query against its document(s); for ``Dataset.map_batches``.

    Two row shapes, told apart by the type of ``documents_column``:

    - a list of candidate documents per row (``list<string>``): the output is a list of scores, in the same order;
    - one document per row (``string``), as in offline-eval pair tables: the output is one float.

    Scores are the engine's ``P(yes)`` (:meth:`Qwen3RerankEngine.score_batch_with_meta`). A batch is one engine
    call, which computes each distinct query's prompt prefix once per pack for all the documents of its rows. Every
    input column is kept; the output column is added at the end, rows in batch order. Use ``batch_format="pyarrow"`` (or
    :func:`rerank_dataset`, which sets it).

    Args:
        model: Hub id or local folder of a Qwen3-Reranker checkpoint; a folder must exist on every node.
        query_column: The query column (strings).
        documents_column: The document column: strings, or lists of strings.
        output_column: The column to add (float64, or list of float64); ``None``: ``"score"`` for one document per
            row, ``"scores"`` for lists.
        instruction: Task instruction of the prompt; ``None`` uses the official one.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` picks CUDA when the actor sees a GPU, else CPU.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or short names); ``None``: bf16 on CUDA and on CPUs
            where bf16 measures faster, else fp32.
        quantization: ``"int8"`` (CPU only): int8 weights and activations in the projections of every layer but
            the first; ``None``: everything in ``dtype``.
        local_files_only: Never download; use the folder or the Hugging Face cache of each node.
        revision: Hub revision (branch, tag or commit).
        token: Hugging Face token (sent to every actor with its arguments); ``None`` uses each node's ``HF_TOKEN``.
        max_length: Tokens per prompt (the official value is the default); longer documents are cut from their end.
        max_tokens_per_pack: Token budget of one forward pass.
        max_docs_per_pack: Cap on documents per forward pass; ``None``: no cap.
        meta_column: A column to add with the batch's ``RunMeta`` (a struct: packs, tokens, timings, device, ...),
            the same for every row of the batch; ``None``: no meta column.

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
        quantization: str | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK,
        max_docs_per_pack: int | None = None,
        meta_column: str | None = None,
    ) -> None:
        check_column_arguments(
            {"query_column": query_column, "documents_column": documents_column},
            {"output_column": output_column, "meta_column": meta_column},
        )
        self.query_column, self.documents_column, self.output_column = query_column, documents_column, output_column
        options = RerankOptions(
            instruction=instruction,
            max_length=max_length,
            max_tokens_per_pack=max_tokens_per_pack,
            max_docs_per_pack=max_docs_per_pack,
        )
        spec = LoadSpec(model, device, dtype, local_files_only, revision, token, quantization)
        self._hold(Qwen3RerankEngine, spec, options, meta_column)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """The batch with the score column added, in row order."""
        columns = {"query_column": self.query_column, "documents_column": self.documents_column}
        shape = check_batch(type(self).__name__, batch, columns)["documents_column"]
        one_per_row = shape == "string"
        output_column = score_column(self.output_column, shape)
        check_output_column(output_column, batch.column_names)
        check_output_column(self.meta_column, batch.column_names, "meta_column")
        queries: list[str] = batch.column(self.query_column).to_pylist()
        documents = batch.column(self.documents_column).to_pylist()
        candidates: list[list[str]] = [[doc] for doc in documents] if one_per_row else documents

        # One request per row; the engine computes each distinct query's prefix once per pack for all its rows.
        result = self.holder.engine.score_batch_with_meta(list(zip(queries, candidates, strict=True)))
        if one_per_row:
            column = pa.array([row_scores[0] for row_scores in result.scores], type=pa.float64())
        else:
            column = pa.array(result.scores, type=pa.list_(pa.float64()))
        return self._with_meta(batch.append_column(output_column, column), result.meta)
