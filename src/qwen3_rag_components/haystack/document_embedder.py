"""Qwen3DocumentEmbedder: a Haystack document embedder over the packed Qwen3-Embedding engine."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from haystack import Document, component
from haystack.utils import ComponentDevice, Secret

from ..engine import EmbedOptions, EmbedResult, Qwen3EmbedEngine
from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_MAX_LENGTH, DEFAULT_MAX_TOKENS_PER_PACK
from ..engine.precision import ranges_as_lists
from ..engine.service import Embedder
from ._common import EngineComponent, check_documents, texts_to_embed


@component
class Qwen3DocumentEmbedder(EngineComponent):
    """
    Embeds documents with a Qwen3-Embedding model and stores each vector in the document's `embedding` field.

    Documents are embedded as they are (no instruction, as in the official code); the vector is the last hidden
    state at the appended `<|endoftext|>` token, cut to `dimensions` (Matryoshka) and L2-normalised. Many documents
    go through the model per forward pass, packed back to back under a token budget (`max_tokens_per_pack`, which
    plays the role of Haystack's `batch_size`); each one attends only to itself, so its vector does not depend on
    its neighbours. There are no `prefix`/`suffix` parameters: Qwen3-Embedding documents take none.

    A document whose `content` is `None` is embedded as an empty text (plus its `meta_fields_to_embed` values), like
    Haystack's embedders do.

    ### Usage example

    ```python
    from haystack import Document
    from qwen3_rag_components.haystack import Qwen3DocumentEmbedder

    embedder = Qwen3DocumentEmbedder("Qwen/Qwen3-Embedding-0.6B", meta_fields_to_embed=["title"])
    docs = [Document(content="Beijing is the capital of China.", meta={"title": "China"})]
    docs = embedder.run(docs)["documents"]
    print(len(docs[0].embedding))  # 1024
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_EMBEDDER,
        *,
        device: ComponentDevice | None = None,
        dtype: str | None = None,
        quantization: str | None = None,
        token: Secret | None = Secret.from_env_var(["HF_API_TOKEN", "HF_TOKEN"], strict=False),  # noqa: B008
        local_files_only: bool = False,
        revision: str | None = None,
        dimensions: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        ranges: list[list[float]] | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_tokens_per_pack: int = DEFAULT_MAX_TOKENS_PER_PACK,
        progress_bar: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
    ) -> None:
        """
        Creates a Qwen3DocumentEmbedder; the model is loaded by `warm_up()` or the first `run()`.

        :param model:
            A Qwen3-Embedding hub id or a local folder (safetensors weights; no remote code is run).
        :param device: The device; `None` picks the best one here (and is saved as `None`, to pick again on load).
        :param dtype: `"float32"`, `"bfloat16"`, `"float16"` (or `"fp32"`, `"bf16"`, `"fp16"`);
            `None`: bf16 on CUDA and on CPUs where bf16 measures faster, else fp32. fp32 gives the official numbers
            (within 1e-5); bf16 is faster and agrees to about 1e-2 (see docs/fidelity.md).
        :param quantization: `"int8"` (CPU only): the projections of every layer but the first run int8 weights and
            activations, quantized at load from the normal checkpoint; faster where the CPU's int8 products are, with
            scores or vectors that move from the fp32 ones (measured in docs/fidelity.md). `None`: everything in
            `dtype`.
        :param token: The Hugging Face token for private or gated models.
        :param local_files_only: If `True`, never download: use the local folder or the Hugging Face cache only.
        :param revision: The model revision (branch, tag or commit) on the Hugging Face Hub.
        :param dimensions:
            Keep the first `dimensions` values of each vector (Matryoshka); `None` keeps all.
        :param normalize:
            L2-normalise each vector (after cutting it to `dimensions`).
        :param precision:
            The vectors' precision, as in sentence-transformers: `"float32"`, `"int8"`, `"uint8"` (256 buckets per
            dimension over `ranges`), `"binary"` or `"ubinary"` (sign bits packed 8 per byte, `ceil(d / 8)` values).
        :param ranges:
            For `"int8"`/`"uint8"`: the minimum and maximum of each dimension (two lists, e.g.
            `quantization_ranges(calibration_vectors).tolist()`); `None` takes them from each run's own vectors.
        :param max_length:
            The maximum length in tokens; longer texts are cut from their end, as the official code does.
        :param max_tokens_per_pack:
            The token budget of one forward pass (the batch size, in tokens). Lower it if memory runs out.
        :param progress_bar:
            Show a progress bar over the documents.
        :param meta_fields_to_embed:
            Meta fields whose values are put before the content, in this order.
        :param embedding_separator:
            The separator between the meta values and the content.
        :raises ValueError:
            If an option is out of range.
        """
        options = EmbedOptions(
            dimensions=dimensions,
            normalize=normalize,
            precision=precision,
            ranges=ranges,
            max_length=max_length,
            max_tokens_per_pack=max_tokens_per_pack,
        )
        self._init_engine(
            Qwen3EmbedEngine, options, model, device, dtype, quantization, token, local_files_only, revision
        )
        self.progress_bar = progress_bar
        self.meta_fields_to_embed = meta_fields_to_embed or []
        self.embedding_separator = embedding_separator

    def _own_parameters(self) -> dict[str, Any]:
        options = self.holder.options
        return dict(
            dimensions=options.dimensions,
            normalize=options.normalize,
            precision=options.precision,
            ranges=ranges_as_lists(options.ranges),
            max_length=options.max_length,
            max_tokens_per_pack=options.max_tokens_per_pack,
            progress_bar=self.progress_bar,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
        )

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """
        Embeds the documents.

        :param documents:
            The documents to embed.
        :returns:
            A dictionary with the following keys:
            - `documents`: Copies of the documents, in the same order, with `embedding` set.
            - `meta`: What the run computed (`RunMeta.to_dict()`: documents, packs, tokens, timings, device, dtype).
        :raises TypeError:
            If `documents` is not a list of Documents.
        """
        self._check(documents)
        result = Embedder(self.holder).embed(self._texts(documents), progress=self.progress_bar)
        return _output(documents, result)

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        """
        Like `run()`, with the same parameters and outputs, awaiting the model's shared scheduler: no thread is held
        while the model computes, and cancelling the task drops its packs that have not started.
        """
        self._check(documents)
        result = await Embedder(self.holder).aembed(self._texts(documents), progress=self.progress_bar)
        return _output(documents, result)

    @staticmethod
    def _check(documents: list[Document]) -> None:
        check_documents(
            documents,
            "Qwen3DocumentEmbedder",
            " In case you want to embed a string, please use the Qwen3TextEmbedder.",
        )

    def _texts(self, documents: list[Document]) -> list[str]:
        return texts_to_embed(documents, self.meta_fields_to_embed, self.embedding_separator)


def _output(documents: list[Document], result: EmbedResult) -> dict[str, Any]:
    """Copies of the documents, in the same order, with ``embedding`` set; and the run's meta."""
    vectors = result.embeddings
    embedded = [dataclasses.replace(doc, embedding=v.tolist()) for doc, v in zip(documents, vectors, strict=True)]
    return {"documents": embedded, "meta": result.meta.to_dict()}
