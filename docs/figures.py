"""Figures of the docs site and its benchmarks page, drawn from the engine's own pack plan and from bench/results.

    python docs/figures.py    # writes docs/img/pack-attention.png, docs/img/benchmarks.png and docs/benchmarks.md

The attention picture is not drawn from a description of the design: a real reranker pack is tokenized with the
offline Qwen3 tokenizer and the engine's prompt code, planned with ``plan_packs``, turned into ``PackInputs`` by
``build_pack_inputs`` and the T×T "who attends to whom" image is scattered from the attention plan the forward pass
uses (each own-token bucket's ``query_index``, ``key_index``, ``output_index`` and key mask; each prefix part's
prefix and queries). The benchmarks page and plot are generated from
``bench/results/*.json`` (plus the executed-FLOP and machine lines of the matching ``.txt`` reports).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from qwen3_rag_components.engine.attention import AttentionPlan
from qwen3_rag_components.engine.forward import PackInputs, build_pack_inputs
from qwen3_rag_components.engine.options import DEFAULT_MAX_TOKENS_PER_PACK
from qwen3_rag_components.engine.packing import plan_packs
from qwen3_rag_components.engine.prompts import (
    DEFAULT_RERANK_INSTRUCTION,
    RERANK_PREFIX,
    RERANK_SUFFIX,
    TextTokenizer,
    rerank_document_body,
    rerank_query_body,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DOCS_DIR = Path(__file__).resolve().parent
RESULTS_DIR = DOCS_DIR.parent / "bench" / "results"

EXAMPLE_QUERY = "What is the capital of China?"
EXAMPLE_DOCUMENTS = (
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Beijing hosted the Summer Olympics in 2008.",
    "Paris.",
)

# Cell classes of the attention picture (0 = no attention).
PREFIX_SELF, DOC_TO_PREFIX, DOC_SELF, LEAK = 1, 2, 3, 4
CLASS_COLOURS = ("#ffffff", "#7f7f7f", "#9ecae1", "#08519c", "#d62728")
CLASS_NAMES = (
    "",
    "query part → itself (causal)",
    "document → the shared query part",
    "document → itself (causal)",
    "anything else (a bug)",
)

# ------------------------------------------------------------------------------------------------ attention


@dataclass(frozen=True)
class Span:
    """A row of the pack: the shared query part (prefix) or one document, as flat token indices [start, stop)."""

    label: str
    start: int
    stop: int
    prefix: int  # index into the pack's spans of the prefix this span attends to; -1 for a prefix itself


@dataclass(frozen=True)
class ExamplePack:
    query: str
    documents: tuple[str, ...]  # in input order; ``Span.label`` numbers them from 1
    segments: list[tuple[list[int], list[list[int]]]]  # what build_pack_inputs got: (prefix ids, [item ids, ...])
    spans: list[Span]  # in pack order
    inputs: PackInputs

    @property
    def num_tokens(self) -> int:
        return len(self.inputs.token_ids)


def build_example_pack(
    tokenizer: PreTrainedTokenizerBase | None = None,
    query: str = EXAMPLE_QUERY,
    documents: Sequence[str] = EXAMPLE_DOCUMENTS,
) -> ExamplePack:
    """One reranker pack made exactly as ``Qwen3RerankEngine`` makes it (prompt code, plan, pack inputs; on CPU)."""
    if tokenizer is None:
        from qwen3_rag_components.testing import build_qwen3_tokenizer

        tokenizer = build_qwen3_tokenizer()
    text = TextTokenizer(tokenizer)
    (body,) = text.plain_ids([rerank_query_body(DEFAULT_RERANK_INSTRUCTION, query)])
    prefix = text.template_ids(RERANK_PREFIX) + body
    suffix = text.template_ids(RERANK_SUFFIX)
    items = [ids + suffix for ids in text.plain_ids([rerank_document_body(d) for d in documents])]
    lengths = [len(i) for i in items]
    (pack,) = plan_packs([len(prefix)], [0] * len(items), lengths, max_tokens=DEFAULT_MAX_TOKENS_PER_PACK)
    segments = [(prefix, [items[i] for i in g.items]) for g in pack.groups]
    spans: list[Span] = []
    for group in pack.groups:
        prefix_span, start = len(spans), spans[-1].stop if spans else 0
        spans.append(Span(f"query part ({len(prefix)} tok)", start, start + len(prefix), -1))
        for i in group.items:
            start = spans[-1].stop
            spans.append(Span(f"doc {i + 1} ({len(items[i])} tok)", start, start + len(items[i]), prefix_span))
    inputs = build_pack_inputs(segments, torch.device("cpu"))
    return ExamplePack(query, tuple(documents), segments, spans, inputs)


def attention_matrix(plan: AttentionPlan, num_tokens: int) -> np.ndarray:
    """[T, T] bool, row = query token, column = key token, scattered from the plan: each own-token bucket (causal, or
    its key mask for last-token queries; padded queries go to row T and are dropped) and each prefix part."""
    matrix = torch.zeros(num_tokens + 1, num_tokens, dtype=torch.bool)
    for b in plan.buckets:
        n, lq = b.query_index.shape
        lk = b.key_index.shape[1]
        if b.key_bias is None:  # whole rows, causal: own query a sees own keys 0..a
            allowed = torch.ones(lq, lk, dtype=torch.bool).tril().expand(n, lq, lk)
        else:
            allowed = (b.key_bias[:, 0] == 0).expand(n, lq, lk)
        rows = b.output_index.view(n, lq, 1).expand(n, lq, lk)[allowed]
        cols = b.key_index[:, None, :].expand(n, lq, lk)[allowed]
        matrix[rows, cols] = True
    for part in plan.prefix_parts:
        queries = part.queries
        if isinstance(queries, slice):
            queries = torch.arange(queries.start, queries.stop)
        matrix[queries[:, None], torch.arange(part.prefix.start, part.prefix.stop)[None, :]] = True
    return matrix[:num_tokens].numpy()


def classify(matrix: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """[T, T] int: 0 where ``matrix`` is False, else the class of the (query, key) pair (PREFIX_SELF, ...)."""
    owner = np.concatenate([np.full(s.stop - s.start, k) for k, s in enumerate(spans)])  # [T] span of each token
    prefix_of = np.array([s.prefix for s in spans])
    is_prefix = prefix_of < 0
    q, k = owner[:, None], owner[None, :]
    same = np.where(is_prefix[q], PREFIX_SELF, DOC_SELF)
    classes = np.where(q == k, same, np.where(prefix_of[q] == k, DOC_TO_PREFIX, LEAK))
    return np.where(matrix, classes, 0)


def bucket_of_query(plan: AttentionPlan, num_tokens: int) -> np.ndarray:
    """[T] index of the own-token bucket in which each token is a query (-1: not a query)."""
    owner = np.full(num_tokens + 1, -1)
    for index, b in enumerate(plan.buckets):
        owner[b.output_index.numpy()] = index
    return owner[:num_tokens]


def draw_pack_attention(example: ExamplePack, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    t = example.num_tokens
    fig = Figure(figsize=(13, 8.2), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, height_ratios=[6, 1.5])
    panels = [
        (example.inputs.plan, "All layers but the last: every token is a query"),
        (example.inputs.readout_plan, "Last layer: only each document's last token is a query"),
    ]
    images = [classify(attention_matrix(plan, t), example.spans) for plan, _ in panels]
    axes = []
    for column, ((plan, title), image) in enumerate(zip(panels, images, strict=True)):
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(image, cmap=ListedColormap(CLASS_COLOURS), vmin=0, vmax=4, interpolation="nearest", aspect="auto")
        label_spans(ax, example.spans)
        draw_bucket_strip(ax, bucket_of_query(plan, t))
        shapes = ", ".join("×".join(str(n) for n in (*b.query_index.shape, b.key_index.shape[1])) for b in plan.buckets)
        prefix_keys = sum(p.prefix.stop - p.prefix.start for p in plan.prefix_parts)
        ax.set_title(
            f"{title}\nown tokens: {len(plan.buckets)} buckets [N×Lq×Lk] {shapes}\n"
            f"shared prefix: {len(plan.prefix_parts)} part of {prefix_keys} keys, read in place"
        )
        ax.set_xlabel("key token", fontsize=9)
        ax.set_ylabel("query token", fontsize=9)
        axes.append(ax)
    draw_positions(fig.add_subplot(grid[1, 0]), example, axes[0].get_xlim())
    text_ax = fig.add_subplot(grid[1, 1])
    text_ax.axis("off")
    leaks = sum(int((image == LEAK).sum()) for image in images)
    names = [*CLASS_NAMES[1:LEAK], f"anything else (a bug): {leaks} cells"]
    classes = zip(CLASS_COLOURS[1:], names, strict=True)
    legend = [Patch(facecolor=c, edgecolor="#444444", label=n) for c, n in classes]
    text_ax.legend(handles=legend, loc="upper left", ncols=2, frameon=False, fontsize=8)
    texts = [f"query: {example.query!r}", *(f"doc {i + 1}: {d!r}" for i, d in enumerate(example.documents))]
    text_ax.text(0.01, 0.6, "\n".join(texts), fontsize=8, va="top", transform=text_ax.transAxes)
    fig.suptitle(f"One real reranker pack (T = {t} tokens) as the engine's attention plan sees it", fontsize=13)
    fig.savefig(path, dpi=90, metadata={"Software": None})


def label_spans(ax: Axes, spans: Sequence[Span]) -> None:
    centres = [(s.start + s.stop - 1) / 2 for s in spans]
    labels = [s.label for s in spans]
    ax.set_xticks(centres, labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(centres, labels, fontsize=8)
    for s in spans[1:]:
        ax.axhline(s.start - 0.5, color="#bbbbbb", linewidth=0.6)
        ax.axvline(s.start - 0.5, color="#bbbbbb", linewidth=0.6)


BUCKET_COLOURS = ("#e6ab02", "#66a61e", "#e7298a", "#7570b3", "#a6761d", "#1b9e77")


def draw_bucket_strip(ax: Axes, owner: np.ndarray) -> None:
    """A strip right of the matrix: the colour of the bucket each query row belongs to, runs labelled b0, b1, ..."""
    from matplotlib.patches import Rectangle

    t = len(owner)
    left, width = t + 1.5, max(4.0, 0.05 * t)
    for row, bucket in enumerate(owner):
        if bucket >= 0:
            colour = BUCKET_COLOURS[bucket % len(BUCKET_COLOURS)]
            ax.add_patch(Rectangle((left, row - 0.5), width, 1, facecolor=colour, edgecolor="none"))
    run_starts = [r for r in range(t) if owner[r] >= 0 and (r == 0 or owner[r - 1] != owner[r])]
    for start in run_starts:
        stop = next((r for r in range(start, t) if owner[r] != owner[start]), t)
        ax.text(left + width + 1, (start + stop - 1) / 2, f"b{owner[start]}", va="center", fontsize=7)
    ax.text(left + width / 2, -1.5, "bucket", ha="center", va="bottom", fontsize=7)
    ax.set_xlim(-0.5, left + width + 6)


def draw_positions(ax: Axes, example: ExamplePack, xlim: tuple[float, float]) -> None:
    positions = example.inputs.position_ids.numpy()
    ax.step(np.arange(len(positions)), positions, where="mid", color="#08519c", linewidth=1.2)
    ax.set_xlim(*xlim)
    ax.set_ylabel("position id", fontsize=8)
    ax.set_xlabel("flat index in the pack: positions restart after the query part for every document", fontsize=8)
    ax.tick_params(labelsize=8)


# ------------------------------------------------------------------------------------------------ benchmarks

PEER_NOTES = {
    "official-vocab": "the model-card code: per-pair prompts, left-padded batches of 16, full `Qwen3ForCausalLM` with "
    "vocabulary-wide logits at every position",
    "official-last": "the same, asking transformers for last-position logits only (`logits_to_keep=1`)",
    "official-padded": "the model-card code: left-padded batches of 16, base `Qwen3Model`, last-token pooling",
    "st-crossencoder": "sentence-transformers v6 `CrossEncoder` (the library Haystack's and LangChain's stock "
    "rerankers use) on the same checkpoint, with a chat template that renders exactly the official prompt (token "
    "ids checked equal for every pair); batches of 16",
    "st-sentence-transformer": "sentence-transformers v6 `SentenceTransformer` set up as Qwen3-Embedding ships "
    "(left padding, last-token pooling, normalisation; the instruction as query prompt); batches of 16",
    "dense-mask-packed": "the packed path as first published for Qwen3-Reranker: the same pack plan through the full "
    "transformers model with a dense T×T float mask, vocabulary-wide logits, query part recomputed per pack",
    "ours": "`Qwen3RerankEngine` / `Qwen3EmbedEngine`: buckets, readout-only last layer, yes/no head rows only",
}
PEER_COLOURS = {
    "official-vocab": "#bdbdbd",
    "official-last": "#969696",
    "official-padded": "#969696",
    "st-crossencoder": "#6baed6",
    "st-sentence-transformer": "#6baed6",
    "dense-mask-packed": "#fd8d3c",
    "ours": "#08519c",
}


@dataclass(frozen=True)
class BenchTable:
    """One workload of one benchmark run: the JSON peer records plus what the page says about them."""

    title: str
    unit: str  # "docs" or "texts"
    facts: str
    peers: list[dict[str, Any]]
    useful_flops: float
    executed_flops: float
    matmul_gflops: float
    note: str  # which peer max |Δ| is measured against
    packs: str  # how ours packed the workload

    def rate(self, peer: dict[str, Any]) -> float:
        return float(peer[f"{self.unit}_per_s"])


@dataclass(frozen=True)
class BenchRun:
    name: str  # file stem in bench/results
    report: str  # stem of the .txt report that the run printed (one report holds every dtype of a run)
    command: str
    args: dict[str, str]  # the run's command-line arguments, as the JSON stores them
    machine: str
    tables: list[BenchTable]


def load_runs(results_dir: Path = RESULTS_DIR) -> list[BenchRun]:
    """The committed runs; a run on a CPU with native bf16 also wrote ``<name>-bfloat16.json`` (same report)."""
    runs = []
    for name in ("rerank-L4", "rerank-L28", "embed-L4", "embed-L28"):
        loader = load_rerank if name.startswith("rerank") else load_embed
        runs.append(loader(results_dir, name))
        if (results_dir / f"{name}-bfloat16.json").exists():
            runs.append(loader(results_dir, f"{name}-bfloat16", report_name=name))
    return runs


def _dtype_section(report: str, dtype: str) -> str:
    """The part of a report that one dtype's peers printed (a report of one dtype: all of it)."""
    sections = re.split(r"^(?==== every peer in )", report, flags=re.MULTILINE)
    return next((part for part in sections if part.startswith(f"=== every peer in {dtype};")), report)


def _report_line(text: str, pattern: str, name: str) -> re.Match[str]:
    match = re.search(pattern, text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"bench/results/{name}.txt has no line matching {pattern!r}; rerun the benchmark.")
    return match


EMBED_DEFAULTS = {"documents": "300", "queries": "100"}


def _command(script: str, args: dict[str, str], default_peers: str | None = None) -> str:
    parts = [f"python bench/{script}.py --layers {args['layers']}"]
    if default_peers is not None and args["peers"] != default_peers:
        parts.append("--peers " + " ".join(re.findall(r"'([^']+)'", args["peers"])))
    if script == "embed":
        parts += [f"--{key} {args[key]}" for key, default in EMBED_DEFAULTS.items() if args[key] != default]
    if args.get("dtype") not in (None, "None"):
        parts.append(f"--dtype {args['dtype']}")
    return " ".join([*parts, f"--json {args['json']}"])


def _machine(report: str, name: str, data: dict[str, Any]) -> str:
    """The report's machine line; reports with a dtype give their matmul rate on a line of their own."""
    machine = _report_line(report, r"^machine: (.*)$", name).group(1)
    if "dtype" not in data:
        return machine
    return f"{machine}; {data['dtype']} matmul {data['matmul_gflops']:.1f} GFLOP/s (4096² F.linear, best of 3)"


NOT_OFFICIAL = (
    " (the official peers were not run at this depth; `st-crossencoder` feeds the official token ids, and the 4-layer "
    "tables give its distance to `official-vocab`)"
)


def _packs_note(meta: dict[str, Any], useful_tokens: int) -> str:
    if meta["packs"] == 1:
        return "Ours ran 1 pack: the query part once."
    return (
        f"Ours ran {meta['packs']} packs, so it computed the query part {meta['packs']} times: "
        f"{meta['tokens_computed']:,} tokens against {useful_tokens:,} useful ones (the executed count below "
        "assumes one query part)."
    )


def load_rerank(results_dir: Path, name: str, report_name: str | None = None) -> BenchRun:
    data = json.loads((results_dir / f"{name}.json").read_text())
    report = (results_dir / f"{report_name or name}.txt").read_text()
    layers = int(data["args"]["layers"])
    all_peers = str(["official-vocab", "official-last", "st-crossencoder", "dense-mask-packed", "ours"])
    tables = []
    for key, description in (("R", "passages"), ("S", "short product-like documents")):
        w = data["workloads"][key]
        lengths = sorted(w["document_tokens"])
        reference = w["peers"][0]["peer"]
        tables.append(
            BenchTable(
                title=f"Rerank, workload {key} ({description}), {layers} layers, {data.get('dtype', 'float32')}",
                unit="docs",
                facts=f"1 query + {len(lengths)} documents; query part {w['query_part_tokens']} tokens; document "
                f"tokens (with the 9-token suffix) median {statistics.median(lengths):.0f}, range {lengths[0]}–"
                f"{lengths[-1]}; per-pair (padding-free) tokens {w['padding_free_tokens']:,}, useful tokens (query "
                f"part once) {w['useful_tokens']:,}",
                peers=w["peers"],
                useful_flops=w["useful_flops"],
                executed_flops=w["executed_flops"],
                matmul_gflops=data["matmul_gflops"],
                note=f"max |Δ| is measured against {_reference(data, reference)}"
                + ("" if reference == "official-vocab" else NOT_OFFICIAL),
                packs=_packs_note(next(p["info"] for p in w["peers"] if p["peer"] == "ours"), w["useful_tokens"]),
            )
        )
    machine = _machine(report, name, data)
    return BenchRun(
        name, report_name or name, _command("rerank", data["args"], all_peers), data["args"], machine, tables
    )


def load_embed(results_dir: Path, name: str = "embed-L4", report_name: str | None = None) -> BenchRun:
    data = json.loads((results_dir / f"{name}.json").read_text())
    report = (results_dir / f"{report_name or name}.txt").read_text()
    meta = data["ours_meta"]
    workload = _report_line(report, r"^workload: (.*); useful work ([\d.]+) GFLOP$", name)
    section = _dtype_section(report, data.get("dtype", "float32"))
    executed = _report_line(section, r"ours executes ([\d.]+) GFLOP", name)
    table = BenchTable(
        title=f"Embed, {data['args']['documents']} documents + {data['args']['queries']} queries, "
        f"{data['args']['layers']} layers, {data.get('dtype', 'float32')}",
        unit="texts",
        facts=workload.group(1),
        peers=data["peers"],
        useful_flops=float(workload.group(2)) * 1e9,
        executed_flops=float(executed.group(1)) * 1e9,
        matmul_gflops=data["matmul_gflops"],
        note=f"max |Δ| is over vector components, against {_reference(data, data['peers'][0]['peer'])}",
        packs=f"Ours ran {meta['documents']['packs']} pack(s) for the documents and {meta['queries']['packs']} for "
        "the queries (no shared prefix: every token is useful work).",
    )
    machine = _machine(report, name, data)
    return BenchRun(name, report_name or name, _command("embed", data["args"]), data["args"], machine, [table])


def _reference(data: dict[str, Any], peer: str) -> str:
    """The |Δ| reference: the first peer of the fp32 run, also for the other dtypes of that run."""
    return f"`{peer}`" if data.get("dtype", "float32") == "float32" else f"the float32 run's `{peer}`"


@dataclass(frozen=True)
class SoloRun:
    """A report of ours alone (``--peers ours``), re-measured after an engine change: no peer to compare with, so only
    its time and its rate against the matmul rate of the same run."""

    name: str  # file stem in bench/results
    command: str
    machine: str
    matmul: str  # "float32 matmul 107.5 GFLOP/s"
    rows: list[tuple[str, str, str]]  # (workload, time in s, executed FLOPs / time / matmul rate)


# The reports of ours alone, and the commands that wrote them (their .txt does not record its arguments).
SOLO_COMMANDS = {
    "rerank-L28-ours-fp32": "python bench/rerank.py --layers 28 --peers ours --dtype float32 --repeat 2",
    "embed-L28-ours-fp32": "python bench/embed.py --layers 28 --documents 150 --queries 50 --peers ours "
    "--dtype float32 --repeat 2",
    "rerank-L28-ours-bf16": "python bench/rerank.py --layers 28 --peers ours --dtype bfloat16 --repeat 3",
    "embed-L28-ours-bf16": "python bench/embed.py --layers 28 --documents 150 --queries 50 --peers ours "
    "--dtype bfloat16 --repeat 3",
}


def load_solo_runs(results_dir: Path = RESULTS_DIR) -> list[SoloRun]:
    runs = []
    for name, command in SOLO_COMMANDS.items():
        report = (results_dir / f"{name}.txt").read_text()
        workloads = re.findall(r"^Workload (\w+ \([^)]*\))", report, flags=re.MULTILINE) or [
            _report_line(report, r"^workload: (\d+ documents [^;]*\+ \d+ queries)", name).group(1)
        ]
        times = re.findall(r"^ours +\S+ +\S+ +([\d.]+) ", report, flags=re.MULTILINE)
        rates = re.findall(r"executed FLOPs / time / matmul rate = ([\d.]+%)", report)
        if not len(workloads) == len(times) == len(rates):
            raise ValueError(
                f"bench/results/{name}.txt: {len(workloads)} workloads, {len(times)} times of ours and "
                f"{len(rates)} rates; rerun the benchmark."
            )
        machine = _report_line(report, r"^machine: (.*?); torch", name).group(1)
        matmul = _report_line(report, r"^=== every peer in \S+; (.* GFLOP/s)", name).group(1)
        runs.append(SoloRun(name, command, machine, matmul, list(zip(workloads, times, rates, strict=True))))
    return runs


def solo_runs_markdown(runs: Sequence[SoloRun]) -> str:
    lines = [
        "## Ours alone, re-measured",
        "",
        "After later engine changes, ours was re-run alone at 28 layers (no peers in these runs, so no ×; the tables "
        "above give the peers' times on the same machine kind).",
        "",
        "| report | machine | matmul rate (same run) | workload | time (s) | executed FLOPs / time / matmul rate |",
        "|---|---|---|---|---:|---:|",
    ]
    for run in runs:
        for workload, seconds, rate in run.rows:
            lines.append(f"| `{run.name}` | {run.machine} | {run.matmul} | {workload} | {seconds} | **{rate}** |")
    commands = "\n".join(f"{run.command}    # report: bench/results/{run.name}.txt" for run in runs)
    return "\n".join([*lines, "", "```bash", commands, "```"])


def draw_benchmarks(runs: Sequence[BenchRun], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tables = [t for run in runs for t in run.tables]
    fig = Figure(figsize=(10, 1.2 + 0.42 * sum(len(t.peers) + 1.2 for t in tables)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tables), 1, sharex=True, height_ratios=[len(t.peers) + 0.6 for t in tables])
    for ax, table in zip(axes, tables, strict=True):
        names = [p["peer"] for p in table.peers][::-1]
        rates = [table.rate(p) for p in table.peers][::-1]
        ax.barh(names, rates, color=[PEER_COLOURS[n] for n in names], height=0.7)
        for y, peer in enumerate(table.peers[::-1]):
            ratio = "" if peer["peer"] == "ours" else f"   (ours {peer['ours_speedup']:.2f}× faster)"
            label = f"{table.rate(peer):.1f} {table.unit}/s{ratio}"
            ax.text(table.rate(peer) * 1.04, y, label, va="center", fontsize=8)
        ax.set_title(table.title, loc="left", fontsize=10)
        ax.tick_params(axis="y", labelsize=9)
    rates = [t.rate(p) for t in tables for p in t.peers]
    threads = "/".join(sorted({run.args["threads"] for run in runs}))
    dtypes = ", ".join(sorted({t.title.rsplit(", ", 1)[1] for t in tables}))
    axes[-1].set_xscale("log")
    axes[-1].set_xlim(min(rates) / 2, max(rates) * 3.5)
    axes[-1].set_xlabel(f"throughput (documents or texts per second, log scale; CPU, {dtypes}, {threads} threads)")
    fig.suptitle("Same inputs, same process, same thread count: throughput per peer")
    fig.savefig(path, dpi=100, metadata={"Software": None})


def _table_markdown(table: BenchTable) -> str:
    headers = [f"{table.unit}/s", "tokens/s", "time (s)", "ours ×", "util", "RSS before (MB)", "peak RSS (MB)"]
    lines = [
        "| peer | " + " | ".join(headers) + " | max \\|Δ\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in table.peers:
        lines.append(
            f"| {p['peer']} | {table.rate(p):.1f} | {p['tokens_per_s']:.0f} | {p['seconds']:.2f} | "
            f"{p['ours_speedup']:.2f}× | {100 * p['utilisation']:.1f}% | {p['rss_before_mb']:.0f} | "
            f"{p['peak_rss_mb']:.0f} | {p['max_abs_delta']:.1e} |"
        )
    ours = next(p for p in table.peers if p["peer"] == "ours")
    hardware = table.executed_flops / ours["seconds"] / (table.matmul_gflops * 1e9)
    executed = (
        f"Ours executes {table.executed_flops / 1e9:,.1f} of the {table.useful_flops / 1e9:,.1f} useful GFLOP "
        f"({table.executed_flops / table.useful_flops:.0%}); executed FLOPs / time / matmul rate = {hardware:.1%}."
    )
    footer = f"{table.note}. {table.packs} {executed}"
    return "\n".join([f"### {table.title}", "", table.facts + ".", "", *lines, "", footer])


def benchmarks_markdown(runs: Sequence[BenchRun], solo_runs: Sequence[SoloRun] = ()) -> str:
    lines = dict.fromkeys(f"{run.command}    # report: bench/results/{run.report}.txt" for run in runs)
    commands = "\n".join(lines)  # one line per command: a run on native bf16 wrote both dtypes
    machines = "\n".join(f"- `{run.name}`: {run.machine}" for run in runs)
    repeats = sorted({run.args["repeat"] for run in runs})
    timing = "once" if repeats == ["1"] else f"{' / '.join(repeats)} times (the median is shown)"
    sections = [BENCH_INTRO.format(commands=commands, machines=machines, timing=timing)]
    sections += [_table_markdown(t) for run in runs for t in run.tables]
    if solo_runs:
        sections.append(solo_runs_markdown(solo_runs))
    sections.append(BENCH_NOTES)
    return "\n\n".join(sections) + "\n"


BENCH_INTRO = """\
<!-- Generated by docs/figures.py from bench/results/*.json (and the .txt reports): edit those, not this file. -->
# Benchmarks

*This page is generated by `docs/figures.py` from `bench/results/`; rerun the benchmarks, then `make docs`.*

Every peer runs side by side in one process, on the same inputs, with the same thread count, on random Qwen3 weights of
the real 0.6B geometry (hidden 1024, 16 heads, 8 KV heads, head_dim 128, MLP 3072, vocabulary 151,669) cut to 4 or 28
layers (28 is the real depth). Time and memory do not depend on whether the weights are trained, and every peer's
scores or vectors are compared on the same weights. The results were produced by:

```bash
{commands}
```

Machine and software, as each report prints them (the matmul rate is measured at the start of each run):

{machines}

Each peer is timed {timing} after a 2-document warm-up call; expect a few percent of noise between runs.

![Throughput per peer and workload](img/benchmarks.png)

Workloads: **R** (passages) is 1 query + 100 documents with lognormal word counts (median 60, σ 0.8, clipped 4–400);
**S** (short, product-like) is 1 query + 200 documents (median 12 words, σ 0.5, clipped 2–60). The embedding run
embeds 300 documents of R's length distribution and 100 short queries with the official instruction.

Peers:

| peer | what it is |
|---|---|
""" + "\n".join(f"| {name} | {note} |" for name, note in PEER_NOTES.items())

BENCH_NOTES = """\
## Reading the columns

- **tokens/s** has the same numerator for every peer of a table: for reranking, the tokens of the per-pair
  formulation without padding (the query part counted once per document); for embedding, the tokens of all texts.
- **ours ×** = peer time / our time.
- **util** (utilisation) = useful FLOPs / time / the matmul rate of the table's dtype measured in the same run (a large
  `F.linear`; reports before the `--dtype` option used `torch.mm`, fp32 only). Every peer of a table runs in its dtype.
  Useful FLOPs are what a perfect engine needs: 2 × non-embedding parameters per useful token (each query part once,
  every document with its suffix) plus exact causal attention per document over the query part and itself. The
  numerator is the same for every peer, so util compares peers like the time does, on an absolute scale.
- **Why ours can exceed 100%**: the engine's last layer computes keys and values for every token, but queries,
  attention output, `o_proj` and the MLP only at the tokens that are read out (one per document). So it executes less
  than the "useful" work, the more so the fewer the layers (one layer in 4 is mostly skipped, one in 28 much less).
  The line under each table gives the executed FLOPs and the hardware-honest rate, executed FLOPs / time / matmul
  rate; it is the number to compare with 100%.
- **RSS before** is the resident set just before the timed call (the peer's loaded weights included); **peak RSS** the
  peak during the timed call (VmHWM reset via `/proc/self/clear_refs` just before it). The vocabulary-wide logits of
  `official-vocab` ([batch, length, 151,669] floats) and the dense T×T masks of `dense-mask-packed` are what make their
  peaks high.
- **max |Δ|** is the largest absolute difference of a score (P(yes)) or vector component from the reference peer named
  under the table; a bf16 table's reference is the fp32 run's. In fp32 the tests hold the engine to 1e-5 against the
  official code; the bf16 bounds are in [Fidelity](fidelity.md).
- **bf16 on a CPU with AMX**: ours computes its per-token steps compiled (one pass each, see
  [How the engine packs](engine.md)); its compile ran at load, before the warm-up call, so no table includes it. The
  peers run the transformers modules eagerly, as their libraries do.
"""


# ------------------------------------------------------------------------------------------------ main


def write_all(docs_dir: Path = DOCS_DIR, results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Draw both figures into ``docs_dir/img`` and write ``docs_dir/benchmarks.md``; returns the written paths."""
    img = docs_dir / "img"
    img.mkdir(parents=True, exist_ok=True)
    runs = load_runs(results_dir)
    paths = [img / "pack-attention.png", img / "benchmarks.png", docs_dir / "benchmarks.md"]
    draw_pack_attention(build_example_pack(), paths[0])
    draw_benchmarks(runs, paths[1])
    paths[2].write_text(benchmarks_markdown(runs, load_solo_runs(results_dir)), encoding="utf-8")
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs-dir", type=Path, default=DOCS_DIR, help="where img/ and benchmarks.md are written")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="bench/results with the JSON reports")
    args = parser.parse_args(argv)
    write_all(args.docs_dir, args.results_dir)


if __name__ == "__main__":
    main()
