"""bf16 (the default on CUDA and on CPUs where it measures faster) and fp16 run through the same code on CPU: close
to fp32, finite, yes/no head in fp32; and how ``dtype=None`` picks the dtype.

Tolerances (also in docs/fidelity.md): reranker |ΔP(yes)| ≤ 0.03 in bf16 and ≤ 0.005 in fp16; embeddings cosine to
the fp32 vector ≥ 0.999 in bf16 and ≥ 0.9999 in fp16.
"""

from __future__ import annotations

import json
import logging

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
FAST_BF16 = placement.MatmulRates(float32=80.0, bfloat16=190.0)  # as measured on Zen 4 (2.4x)
SLOW_BF16 = placement.MatmulRates(float32=80.0, bfloat16=7.0)  # as on AVX2 without bf16 units
CLOSE_CALL = placement.MatmulRates(float32=80.0, bfloat16=100.0)  # 1.25x: under the margin


@pytest.fixture
def rates(monkeypatch):
    """Make the probe answer ``MatmulRates`` of the test's choosing; the default's environment variable unset."""
    monkeypatch.delenv(DTYPE_VARIABLE)

    def install(measured: placement.MatmulRates) -> None:
        monkeypatch.setattr(placement, "cpu_matmul_rates", lambda: measured)

    return install


@pytest.mark.parametrize(
    ("measured", "device", "expected", "why"),
    [
        (FAST_BF16, CPU, torch.bfloat16, "bf16 matmul measured at 2.38x fp32 (190 vs 80 GFLOP/s); dtype='float32'"),
        (SLOW_BF16, CPU, torch.float32, "bf16 matmul measured at 0.09x fp32 (7 vs 80 GFLOP/s), under the 1.3x"),
        (CLOSE_CALL, CPU, torch.float32, "measured at 1.25x fp32"),
        (SLOW_BF16, CUDA, torch.bfloat16, "default on CUDA"),
        (FAST_BF16, CUDA, torch.bfloat16, "default on CUDA"),
    ],
)
def test_default_dtype_follows_the_measured_rates(rates, measured, device, expected, why):
    rates(measured)
    dtype, reason = choose_dtype(None, device)
    assert dtype == expected and why in reason
    assert choose_dtype("float32", device) == (torch.float32, "asked for")  # the exact path stays one word away


def test_the_environment_variable_replaces_only_the_default(rates, monkeypatch):
    rates(SLOW_BF16)
    monkeypatch.setenv(DTYPE_VARIABLE, "bf16")
    assert choose_dtype(None, CPU) == (torch.bfloat16, f"from ${DTYPE_VARIABLE}")
    assert choose_dtype(torch.float16, CPU)[0] == torch.float16
    monkeypatch.setenv(DTYPE_VARIABLE, "bf17")
    with pytest.raises(ValueError, match=rf"\${DTYPE_VARIABLE}='bf17' is not supported; use one of"):
        choose_dtype(None, CPU)


def test_the_probe_measures_once_per_process_and_once_per_cpu_on_disk(monkeypatch, tmp_path):
    """The first process measures and writes the rates under the CPU's key; the next one reads them (no timing);
    a file that is not JSON, or another CPU's entry, means measuring again; an unwritable cache is no error."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    timed: list[int] = []

    def measure(rounds=placement.PROBE_ROUNDS):
        timed.append(rounds)
        return FAST_BF16

    monkeypatch.setattr(placement, "measure_matmul_rates", measure)

    def fresh_process() -> placement.MatmulRates:
        placement.cpu_matmul_rates.cache_clear()
        return placement.cpu_matmul_rates()

    try:
        assert fresh_process() == FAST_BF16 and len(timed) == 1
        assert placement.cpu_matmul_rates() == FAST_BF16 and len(timed) == 1  # the same process: cached
        stored = json.loads(placement.cache_path().read_text())
        assert stored == {placement.cpu_key(): {"float32": 80.0, "bfloat16": 190.0}}
        assert fresh_process() == FAST_BF16 and len(timed) == 1  # a later process: from disk
        placement.cache_path().write_text("{not json")
        assert fresh_process() == FAST_BF16 and len(timed) == 2
        monkeypatch.setattr(placement, "cpu_key", lambda: "another CPU")
        assert fresh_process() == FAST_BF16 and len(timed) == 3
        assert set(json.loads(placement.cache_path().read_text())) == {"another CPU", stored.popitem()[0]}
        (tmp_path / "a file").write_text("")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file"))  # no folder can be made under it
        assert fresh_process() == FAST_BF16 and len(timed) == 4
    finally:
        placement.cpu_matmul_rates.cache_clear()


def test_the_probe_times_both_dtypes_at_the_model_shape():
    """A real measurement (a few hundred ms at most): positive rates, and the key names this CPU, torch and the
    thread count."""
    rates = placement.measure_matmul_rates(rounds=1)
    assert rates.float32 > 0 and rates.bfloat16 > 0
    assert f"torch {torch.__version__}" in placement.cpu_key()
    assert f"{torch.get_num_threads()} threads" in placement.cpu_key()


def test_loading_logs_the_choice_and_meta_shows_it(reranker_paths, rates, caplog):
    rates(FAST_BF16)
    path = str(reranker_paths["tied"])
    with caplog.at_level(logging.INFO, logger="qwen3_rag_components.engine.loading"):
        engine = Qwen3RerankEngine.from_pretrained(path, device="cpu")
    why = (
        "default on this CPU: bf16 matmul measured at 2.38x fp32 (190 vs 80 GFLOP/s); "
        "dtype='float32' for the exact path"
    )
    assert [record.getMessage() for record in caplog.records] == [f"{path}: bfloat16 on cpu ({why})"]
    meta = engine.score_with_meta("q", ["d"]).meta
    assert (meta.dtype, meta.dtype_reason) == ("bfloat16", why)
    asked = Qwen3RerankEngine.from_pretrained(path, device="cpu", dtype="float32")
    assert (asked.score_with_meta("q", ["d"]).meta.dtype_reason, asked.dtype) == ("asked for", torch.float32)


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
