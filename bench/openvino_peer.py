"""The OpenVINO int8 peer of bench/rerank.py and bench/embed.py: the same random checkpoint, converted with
``openvino.convert_model`` and its weights compressed to int8 by NNCF (``nncf.compress_weights``: int8 asymmetric,
per output channel, what optimum-intel's ``--weight-format int8`` export does), run by OpenVINO's CPU plugin with its
defaults (it picks the activations' precision and any dynamic quantization itself). Inputs are the official ones:
the model-card prompt (reranker) or the texts with ``<|endoftext|>`` (embedder), per-pair batches padded on the right
so that no real token sees padding, and the output read at each row's last real token.

Install with ``pip install -e '.[peers-openvino]'``; where it is missing, the peer is skipped with that message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoModelForCausalLM

PEER = "openvino-int8"


def missing() -> str | None:
    """Why the peer cannot run here, or None."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as error:
        return f"{PEER} skipped: {error}; install it with pip install -e '.[peers-openvino]'"
    return None


class LastTokenStates(torch.nn.Module):
    """The decoder's final-norm hidden state at each row's last real token; rows padded on the right.
    input_ids, attention_mask: [B, L] -> [B, C]."""

    def __init__(self, base: torch.nn.Module, head: torch.Tensor | None) -> None:
        super().__init__()
        self.base = base
        self.head = head  # [2, C] the "yes" and "no" rows (reranker), or None (embedder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        last = (attention_mask.sum(1) - 1)[:, None, None].expand(-1, 1, hidden.shape[-1])  # [B, 1, C]
        states = hidden.gather(1, last)[:, 0]  # [B, C] (a gather: an index by arange would trace a fixed batch size)
        return states if self.head is None else states @ self.head.T  # [B, 2]: l_yes, l_no


def compile_int8(path: Path, threads: int, yes_no: tuple[int, int] | None) -> tuple[Callable[..., np.ndarray], str]:
    """The compiled int8 model of the checkpoint at ``path`` (the yes/no logits when ``yes_no`` is given, else the
    last-token states) and a line on what it is and how long conversion took."""
    import nncf
    import openvino as ov

    start = time.perf_counter()
    if yes_no is None:
        wrapper = LastTokenStates(AutoModel.from_pretrained(path, dtype=torch.float32, local_files_only=True), None)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
        wrapper = LastTokenStates(model.model, model.lm_head.weight.detach()[list(yes_no)].clone())
    wrapper.eval()
    example = {"input_ids": torch.ones(2, 8, dtype=torch.long), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    with torch.no_grad():
        converted = ov.convert_model(wrapper, example_input=example)
    compressed = nncf.compress_weights(converted)  # int8_asym per channel: every linear layer's weight
    compiled = ov.Core().compile_model(compressed, "CPU", {"INFERENCE_NUM_THREADS": threads})
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    note = (
        f"{PEER}: openvino {ov.__version__}, nncf {nncf.__version__}, int8_asym per-channel weights, "
        f"inference precision {precision}; converted and compressed in {time.perf_counter() - start:.1f} s"
    )
    return lambda ids, mask: compiled({"input_ids": ids, "attention_mask": mask})[0], note


def right_padded(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(map(len, rows))
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


def run_batches(
    run: Callable[..., np.ndarray], rows: list[list[int]], batch_size: int, pad_id: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """``run`` over ``rows`` in input order, ``batch_size`` rows a call: [N, ...]."""
    outputs = [run(*right_padded(rows[i : i + batch_size], pad_id)) for i in range(0, len(rows), batch_size)]
    return (np.concatenate(outputs) if outputs else np.empty((0, 0), dtype=np.float32)), {"batches": len(outputs)}
