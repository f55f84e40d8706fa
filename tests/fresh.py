"""Run engine calls in a new Python process, the way the CLI (or a user's other worker) computes them."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from typing import Any

Call = tuple[str, str, str, tuple, dict]  # (engine kind, model folder, method, args, kwargs)


def numeric_state() -> dict[str, Any]:
    """What a process's fp32 numbers may depend on besides its inputs: torch's global switches, its thread counts, the
    vector instruction set ATen dispatches to, and the environment variables of the math libraries. Shown when this
    process and a fresh one disagree, so that the difference names its cause."""
    import os  # imported here: the fresh process runs this function's source on its own

    import torch

    prefixes = ("OMP_", "GOMP_", "KMP_", "MKL_", "ONEDNN_", "DNNL_", "ATEN_", "OPENBLAS_", "MALLOC_", "QWEN3_RAG_")
    return {
        "torch": torch.__version__,
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "interop threads": torch.get_num_interop_threads(),
        "mkldnn matmul fp32 precision": torch.backends.mkldnn.matmul.fp32_precision,
        "cuda matmul fp32 precision": torch.backends.cuda.matmul.fp32_precision,
        "mkldnn enabled": torch.backends.mkldnn.enabled,
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "default dtype": str(torch.get_default_dtype()),
        "environment": {key: value for key, value in sorted(os.environ.items()) if key.startswith(prefixes)},
    }


SCRIPT = (
    "from __future__ import annotations\n"  # the function's annotations name types the script does not import
    + inspect.getsource(numeric_state)
    + """
import json, sys
import torch
from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine

calls = json.load(sys.stdin)
ballast = [torch.randn(size) for size in (17, 1031, 4099, 65537)]  # a heap unlike the CLI's
engines = {}
results = []
for kind, model, method, args, kwargs in calls:
    if (kind, model) not in engines:
        engine_class = {"rerank": Qwen3RerankEngine, "embed": Qwen3EmbedEngine}[kind]
        engines[kind, model] = engine_class.from_pretrained(model, device="cpu", local_files_only=True)
    results.append(getattr(engines[kind, model], method)(*args, **kwargs))
json.dump({"results": results, "state": numeric_state()}, sys.stdout)
"""
)


def in_fresh_process(*calls: Call) -> tuple[list[Any], dict[str, Any]]:
    """Make each ``engine.<method>(*args, **kwargs)`` in one new process, on engines loaded there on CPU; the results
    come back through JSON, which keeps float32 values exact, with that process's :func:`numeric_state`. The process
    allocates odd-sized tensors first and makes the calls in the order given, so its heap and history differ from any
    other process's."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    return output["results"], output["state"]
