"""bf16 (the default on CUDA and AMX CPUs) and fp16 run through the same code on CPU: close to fp32, finite, yes/no
head in fp32; and how ``dtype=None`` picks the dtype.

Tolerances (also in docs/fidelity.md): reranker |ΔP(yes)| ≤ 0.03 in bf16 and ≤ 0.005 in fp16; embeddings cosine to
the fp32 vector ≥ 0.999 in bf16 and ≥ 0.9999 in fp16.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine
from qwen3_rag_components.engine import placement
from qwen3_rag_components.engine.placement import DTYPE_VARIABLE, choose_dtype

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


CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("native_bf16", "device", "expected", "why"),
    [
        (True, CPU, torch.bfloat16, "CPU with AMX"),
        (False, CPU, torch.float32, "without native bf16"),
        (False, CUDA, torch.bfloat16, "on CUDA"),
        (True, CUDA, torch.bfloat16, "on CUDA"),
    ],
)
def test_default_dtype_follows_the_hardware(monkeypatch, native_bf16, device, expected, why):
    monkeypatch.delenv(DTYPE_VARIABLE)
    monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda: native_bf16)
    dtype, reason = choose_dtype(None, device)
    assert dtype == expected and why in reason
    assert choose_dtype("float32", device) == (torch.float32, "asked for")  # the exact path stays one word away


def test_the_environment_variable_replaces_only_the_default(monkeypatch):
    monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setenv(DTYPE_VARIABLE, "bf16")
    assert choose_dtype(None, CPU) == (torch.bfloat16, f"from ${DTYPE_VARIABLE}")
    assert choose_dtype(torch.float16, CPU)[0] == torch.float16
    monkeypatch.setenv(DTYPE_VARIABLE, "bf17")
    with pytest.raises(ValueError, match=rf"\${DTYPE_VARIABLE}='bf17' is not supported; use one of"):
        choose_dtype(None, CPU)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the CPU flags Linux lists")
def test_native_bf16_means_amx():
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert placement.cpu_has_native_bf16() == ("amx_bf16" in flags)


def test_loading_logs_the_choice_and_meta_shows_it(reranker_paths, monkeypatch, caplog):
    monkeypatch.delenv(DTYPE_VARIABLE)
    monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda: True)
    path = str(reranker_paths["tied"])
    with caplog.at_level(logging.INFO, logger="qwen3_rag_components.engine.loading"):
        engine = Qwen3RerankEngine.from_pretrained(path, device="cpu")
    assert [record.getMessage() for record in caplog.records] == [
        f"{path}: bfloat16 on cpu (default on a CPU with AMX (native bf16 matmul); dtype='float32' for the exact path)"
    ]
    assert engine.score_with_meta("q", ["d"]).meta.dtype == "bfloat16"


@pytest.mark.parametrize(("setting", "reduced"), [("highest", None), ("high", "tf32"), ("medium", "bf16")])
def test_a_reduced_fp32_matmul_precision_is_warned_about_at_load(reranker_paths, caplog, setting, reduced):
    """torch's global switch lets oneDNN (AMX) or cuBLAS compute fp32 products in tf32/bf16: the exact path is gone,
    and loading in fp32 says so and how to get it back; bf16 loads need no warning."""
    path = str(reranker_paths["tied"])
    matmul = (torch.backends.mkldnn.matmul, torch.backends.cuda.matmul)
    previous = torch.get_float32_matmul_precision(), [backend.fp32_precision for backend in matmul]
    torch.set_float32_matmul_precision(setting)
    try:
        assert placement.reduced_fp32_matmul(torch.device("cpu")) == reduced
        with caplog.at_level(logging.WARNING, logger="qwen3_rag_components.engine.loading"):
            Qwen3RerankEngine.from_pretrained(path, device="cpu", dtype="bfloat16")
            assert not caplog.records
            Qwen3RerankEngine.from_pretrained(path, device="cpu", dtype="float32")
    finally:  # both APIs as they were: the legacy setter leaves the per-backend values explicit ("ieee", not "none")
        torch.set_float32_matmul_precision(previous[0])
        for backend, precision in zip(matmul, previous[1], strict=True):
            backend.fp32_precision = precision
    warnings = [record.getMessage() for record in caplog.records]
    if reduced is None:
        assert warnings == []
    else:
        assert warnings == [
            f"{path}: torch's fp32 matmul precision is {reduced!r}: fp32 matrix products may run in that format where "
            "the hardware has it, and scores and vectors may leave the 1e-5 bound of the official fp32 code; "
            "torch.set_float32_matmul_precision('highest') restores the exact path."
        ]
