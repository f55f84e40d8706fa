"""Qwen3TextEmbedder: a Haystack query embedder over the packed Qwen3-Embedding engine."""

from __future__ import annotations

import os
from typing import Any

from haystack import component
from haystack.utils import ComponentDevice, Secret

from ..engine import EmbedOptions, EmbedResult, Qwen3EmbedEngine
from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_MAX_LENGTH
from ..engine.precision import check_fixed_ranges, ranges_as_lists
from ..engine.service import Embedder
from ._common import EngineComponent


@component
class Qwen3TextEmbedder(EngineComponent):
    """
    Embeds a query string with a Qwen3-Embedding model, for retrieval against documents embedded by
    `Qwen3DocumentEmbedder` (same `model`, `dimensions` and `normalize`).

    The text is embedded as a query, in the official format `"Instruct: {instruction}\\nQuery:{text}"`; the vector
    is the last hidden state at the appended `<|endoftext|>` token, cut to `dimensions` (Matryoshka) and
    L2-normalised. There are no `prefix`/`suffix` parameters: the instruction is the model's way to describe the
    task, and documents are embedded without one.

    ### Usage example

    ```python
    from qwen3_rag_components.haystack import Qwen3TextEmbedder

    embedder = Qwen3TextEmbedder("Qwen/Qwen3-Embedding-0.6B")
    embedding = embedder.run("What is the capital of China?")["embedding"]
    print(len(embedding))  # 1024
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
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool = True,
        precision: str = "float32",
        ranges: list[list[float]] | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        """
        Creates a Qwen3TextEmbedder; the model is loaded by `warm_up()` or the first `run()`.

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
        :param instruction:
            The task description put before the query. `None` uses the official default, "Given a web search query,
            retrieve relevant passages that answer the query".
        :param dimensions:
            Keep the first `dimensions` values of the vector (Matryoshka); `None` keeps all.
        :param normalize:
            L2-normalise the vector (after cutting it to `dimensions`).
        :param precision:
            The vectors' precision, as in sentence-transformers: `"float32"`, `"int8"`, `"uint8"` (256 buckets per
            dimension over `ranges`), `"binary"` or `"ubinary"` (sign bits packed 8 per byte, `ceil(d / 8)` values).
        :param ranges:
            For `"int8"`/`"uint8"`: the minimum and maximum of each dimension (two lists, e.g.
            `quantization_ranges(calibration_vectors).tolist()`); `None` takes them from each run's own vectors.
        :param max_length:
            The maximum length in tokens; longer texts are cut from their end, as the official code does.
        :raises ValueError:
            If an option is out of range.
        """
        check_fixed_ranges(precision, ranges, "Qwen3TextEmbedder embeds one query at a time")
        options = EmbedOptions(
            instruction=instruction,
            dimensions=dimensions,
            normalize=normalize,
            precision=precision,
            ranges=ranges,
            max_length=max_length,
        )
        self._init_engine(
            Qwen3EmbedEngine, options, model, device, dtype, quantization, token, local_files_only, revision
        )

    def _own_parameters(self) -> dict[str, Any]:
        options = self.holder.options
        return dict(
            instruction=options.instruction,
            dimensions=options.dimensions,
            normalize=options.normalize,
            precision=options.precision,
            ranges=ranges_as_lists(options.ranges),
            max_length=options.max_length,
        )

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    def run(self, text: str) -> dict[str, Any]:
        """
        Embeds one query.

        :param text:
            The query to embed.
        :returns:
            A dictionary with the following keys:
            - `embedding`: The query's embedding, a list of floats.
            - `meta`: What the run computed (`RunMeta.to_dict()`: tokens, timings, device, dtype).
        :raises TypeError:
            If `text` is not a string.
        """
        self._check(text)
        return _output(Embedder(self.holder).embed([text], kind="queries"))

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    async def run_async(self, text: str) -> dict[str, Any]:
        """
        Like `run()`, with the same parameters and outputs, awaiting the model's shared scheduler: no thread is held
        while the model computes, and cancelling the task drops its packs that have not started.
        """
        self._check(text)
        return _output(await Embedder(self.holder).aembed([text], kind="queries"))

    @staticmethod
    def _check(text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(
                f"Qwen3TextEmbedder expects a string as input, got {type(text).__name__}. "
                "In case you want to embed a list of Documents, please use the Qwen3DocumentEmbedder."
            )


def _output(result: EmbedResult) -> dict[str, Any]:
    return {"embedding": result.embeddings[0].tolist(), "meta": result.meta.to_dict()}
