"""bench/device_check.py, the script a GPU gets run once it is lent, runs end to end (here on the CPU, tiny models)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "device_check.py"


def test_device_check_runs_on_cpu(reranker_paths, embedder_paths, tmp_path):
    reranker = shutil.copytree(reranker_paths["untied"], tmp_path / "reranker")  # it writes the chat template
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--reranker", str(reranker)]
    command += ["--embedder", str(embedder_paths["base"]), "--documents", "6", "--texts", "8", "--repeat", "1"]
    # tiny random models are far more sensitive to bf16 rounding than the 0.6B geometry (tests/test_precision.py)
    command += ["--bf16-score-bound", "0.03"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "default dtype: float32 (from $QWEN3_RAG_DTYPE)" in out  # the suite pins fp32 (tests/conftest.py)
    for kind in ("rerank", "embed"):
        for dtype in ("float32", "bfloat16"):
            assert re.search(rf"^{kind} {dtype}: max \|Δ\| .* ok$", out, re.MULTILINE), out
        assert re.search(rf"^{kind} speed in float32, .*: ours x[\d.]+$", out, re.MULTILINE), out
    assert "attention memory: measured on CUDA only" in out
    assert out.rstrip().endswith("all ok")
