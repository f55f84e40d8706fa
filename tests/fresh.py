"""Run engine calls in a new Python process, the way the CLI (or a user's other worker) computes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

Call = tuple[str, str, str, tuple, dict]  # (engine kind, model folder, method, args, kwargs)

SCRIPT = """
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
json.dump(results, sys.stdout)
"""


def in_fresh_process(*calls: Call) -> list[Any]:
    """Make each ``engine.<method>(*args, **kwargs)`` in one new process, on engines loaded there on CPU; the results
    come back through JSON, which keeps float32 values exact. The process allocates odd-sized tensors first and
    makes the calls in the order given, so its heap and history differ from any other process's."""
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
    return json.loads(result.stdout)
