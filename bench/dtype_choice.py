"""Which CPUs should default to bf16: the bf16 and fp32 matmul rates, the engine's own probe (the measurement
``dtype=None`` decides by) and its choice, and a rerank in both dtypes side by side, with oneDNN (torch's bf16 matmul
on CPU) capped at each instruction set in turn, so one AMX machine stands in for CPUs without AMX.

    python bench/dtype_choice.py --isa "" --layers 28 --documents 60   # this CPU as it is, the issue's workload

    python bench/dtype_choice.py                       # no cap, AVX512_CORE_BF16, AVX512_CORE, AVX2
    python bench/dtype_choice.py --isa AVX512_CORE_BF16

Each cap runs in a fresh process (oneDNN reads ``ONEDNN_MAX_CPU_ISA`` once). fp32 products go through MKL, so the cap
leaves the fp32 rate as it is; a cap above what the CPU has changes nothing.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

from common import WORKLOADS, cpu_flags, cpu_name, make_workload, matmul_gflops, measure, random_checkpoint
from qwen3_rag_components import Qwen3RerankEngine
from qwen3_rag_components.engine.meta import dtype_name
from qwen3_rag_components.engine.placement import DTYPE_VARIABLE, choose_dtype, cpu_matmul_rates

ISAS = ["", "AVX512_CORE_BF16", "AVX512_CORE", "AVX2"]  # "": no cap (AMX where the CPU has it)


def measure_line(layers: int, documents: int, repeat: int) -> str:
    """One line: both matmul rates, the probe's rates and choice, and the best-of-``repeat`` rerank time per dtype
    (interleaved rounds) with the bf16 scores' max |Δ| from fp32's, in this process."""
    bf16, fp32 = matmul_gflops(torch.bfloat16, n=2048), matmul_gflops(torch.float32, n=2048)
    os.environ.pop(DTYPE_VARIABLE, None)
    probe = cpu_matmul_rates()
    chosen = dtype_name(choose_dtype(None, torch.device("cpu"))[0])
    workload = make_workload(WORKLOADS["R"], documents)
    path = str(random_checkpoint("reranker", layers))
    engines, seconds, scores = {}, {}, {}
    for dtype in ("float32", "bfloat16"):
        engines[dtype] = Qwen3RerankEngine.from_pretrained(path, device="cpu", dtype=dtype, local_files_only=True)
        engines[dtype].score(workload.query, workload.documents[:2])  # warm-up
        seconds[dtype] = math.inf
    for _ in range(repeat):  # interleaved: a slow spell of the shared machine hits both dtypes
        for dtype, engine in engines.items():
            timed = measure(functools.partial(engine.score, workload.query, workload.documents), 1)
            seconds[dtype] = min(seconds[dtype], *timed.seconds)
            scores[dtype] = timed.result
    delta = max(abs(a - b) for a, b in zip(scores["float32"], scores["bfloat16"], strict=True))
    return (
        f"| {os.environ.get('ONEDNN_MAX_CPU_ISA') or 'none'} | {bf16:.0f} | {fp32:.0f} | {bf16 / fp32:.2f} | "
        f"{probe.bfloat16:.0f} / {probe.float32:.0f} | {chosen} | "
        f"{seconds['float32']:.2f} | {seconds['bfloat16']:.2f} | {seconds['float32'] / seconds['bfloat16']:.2f} | "
        f"{delta:.1e} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", nargs="+", default=ISAS, help="ONEDNN_MAX_CPU_ISA values ('' for no cap)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--documents", type=int, default=40, help="passages of workload R reranked")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(measure_line(args.layers, args.documents, args.repeat))
        return
    random_checkpoint("reranker", args.layers)  # written once, before the children race for it
    print(f"machine: {cpu_name()} (flags: {cpu_flags()}); torch {torch.__version__}; threads {args.threads}")
    print(f"rerank: {args.layers} layers, 1 query + {args.documents} passages, best of {args.repeat}")
    print(
        "| oneDNN cap | bf16 GFLOP/s | fp32 GFLOP/s | bf16 / fp32 | probe bf16 / fp32 GFLOP/s | dtype=None | "
        "rerank fp32 (s) | rerank bf16 (s) | bf16 × | bf16 max |Δ| |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for isa in args.isa:
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa} if isa else os.environ.copy()
        child = [sys.executable, __file__, "--child", *(argv if argv is not None else sys.argv[1:])]
        result = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
        print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
