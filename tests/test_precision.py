"""bf16 (CUDA's default) and fp16 run through the same code on CPU: close to fp32, finite, yes/no head in fp32.

Tolerances (also in docs/fidelity.md): reranker |ΔP(yes)| ≤ 0.03 in bf16 and ≤ 0.005 in fp16; embeddings cosine to
the fp32 vector ≥ 0.999 in bf16 and ≥ 0.9999 in fp16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine

from .texts import BOUNDARY_DOCUMENTS, random_documents

DOCUMENTS = BOUNDARY_DOCUMENTS + random_documents(20, seed=31)
RERANK_TOLERANCE = {"bfloat16": 0.03, "float16": 0.005}
MIN_COSINE = {"bfloat16": 0.999, "float16": 0.9999}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reranker_in_half_precision(reranker_paths, dtype):
    path = str(reranker_paths["untied"])
    reference = Qwen3RerankEngine.from_pretrained(path, device="cpu").score("what is it?", DOCUMENTS)
    engine = Qwen3RerankEngine.from_pretrained(path, device="cpu", dtype=dtype)
    result = engine.score_with_meta("what is it?", DOCUMENTS)
    assert engine.head.weight.dtype == torch.float32 and result.meta.dtype == dtype
    assert np.isfinite(result.scores).all()
    assert max(abs(a - b) for a, b in zip(result.scores, reference, strict=True)) <= RERANK_TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_embedder_in_half_precision(embedder_paths, dtype):
    path = str(embedder_paths["base"])
    reference = Qwen3EmbedEngine.from_pretrained(path, device="cpu").encode(DOCUMENTS).embeddings
    vectors = Qwen3EmbedEngine.from_pretrained(path, device="cpu", dtype=dtype).encode(DOCUMENTS).embeddings
    assert vectors.dtype == np.float32 and np.isfinite(vectors).all()
    assert (vectors * reference).sum(axis=1).min() >= MIN_COSINE[dtype]
