"""Rerank benchmark: Qwen3RerankEngine against the official per-pair path, sentence-transformers' CrossEncoder, the
dense-mask packed path and OpenVINO with int8 weights (``openvino-int8``, :mod:`openvino_peer`), side by side in one
process on the same inputs and thread count; ``ours-int8`` is our engine with ``quantization="int8"``.

A random tied reranker of the real Qwen3-Reranker-0.6B geometry (with ``--layers`` layers) is written once into
``bench/.cache``. Every peer's scores are compared with the official model-card computation.

    python bench/rerank.py --layers 4
    python bench/rerank.py --layers 28 --dtype both   # every peer in fp32, then every peer in bf16
    python bench/rerank.py --layers 1 --workload S --max-docs 20   # quick check while developing
    python bench/rerank.py --layers 28 --workload R --dtype float32 --peers openvino-int8 ours ours-int8
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

import openvino_peer
from common import (
    BENCH_DTYPES,
    WORKLOADS,
    DecoderShape,
    Measurement,
    Workload,
    add_dtype_argument,
    bench_dtypes,
    cpu_flags,
    cpu_name,
    decoder_shape,
    dtype_json_path,
    format_ratio,
    format_table,
    int8_matmul_gflops,
    make_workload,
    matmul_gflops,
    measure,
    parse_with_peers,
    random_checkpoint,
    readout_only_savings,
    release_memory,
    useful_flops,
)
from qwen3_rag_components.engine import Qwen3RerankEngine
from qwen3_rag_components.engine.options import DEFAULT_MAX_TOKENS_PER_PACK
from qwen3_rag_components.engine.packing import plan_packs
from qwen3_rag_components.testing.oracle import PREFIX, SUFFIX
from qwen3_rag_components.testing.oracle import TASK as INSTRUCTION

OFFICIAL_MAX_LENGTH = 8192


# sentence-transformers v6 renders a (query, document) pair through the checkpoint's chat template as the messages
# [{"role": "query", ...}, {"role": "document", ...}] (plain-string content: the template avoids the patterns that make
# it switch to list-of-parts content), and CrossEncoder.predict(prompt=...) prepends a {"role": "system", ...} message:
# it becomes the instruction. transformers renders with trim_blocks/lstrip_blocks and drops one trailing newline,
# hence the extra blank line after the suffix's "\n\n".
CHAT_TEMPLATE = (
    "{#- Qwen3-Reranker prompt; a system message (CrossEncoder prompt=) replaces the instruction. -#}\n"
    f'{{%- set ns = namespace(instruction="{INSTRUCTION}") -%}}\n'
    '{%- for message in messages if message.role == "system" -%}{%- set ns.instruction = message.content -%}'
    "{%- endfor -%}\n"
    f"{PREFIX}"
    "<Instruct>: {{ ns.instruction }}\n"
    '<Query>: {{ (messages | selectattr("role", "eq", "query") | first).content }}\n'
    '<Document>: {{ (messages | selectattr("role", "eq", "document") | first).content }}'
    f"{SUFFIX}\n"
)

PEER_ORDER = (
    "official-vocab",
    "official-last",
    "st-crossencoder",
    "dense-mask-packed",
    "openvino-int8",
    "ours",
    "ours-int8",
)

# A peer scores (query, documents) and may return extra facts about the run (packs, meta).
PeerFn = Callable[[str, list[str]], tuple[list[float], dict[str, Any]]]


# ------------------------------------------------------------------------------------------------ checkpoint


def ensure_checkpoint(layers: int) -> Path:
    """The shared random reranker of the 0.6B geometry with ``layers`` layers, plus the chat template."""
    return with_chat_template(random_checkpoint("reranker", layers))


def with_chat_template(path: Path) -> Path:
    """``path`` with :data:`CHAT_TEMPLATE` written in, through which sentence-transformers renders the pairs."""
    template = path / "chat_template.jinja"
    if not template.exists() or template.read_text() != CHAT_TEMPLATE:
        template.write_text(CHAT_TEMPLATE)
    return path


def load_causal_lm(path: Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).eval()


# ------------------------------------------------------------------------------------------------ official path


def official_body(query: str, document: str, instruction: str = INSTRUCTION) -> str:
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def official_ids(
    tokenizer: PreTrainedTokenizerBase, query: str, documents: list[str], instruction: str = INSTRUCTION
) -> list[list[int]]:
    """Model-card token ids per pair, unpadded: prefix + body (truncated from its end) + suffix."""
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    bodies = tokenizer(
        [official_body(query, d, instruction) for d in documents],
        truncation="longest_first",
        max_length=OFFICIAL_MAX_LENGTH - len(prefix) - len(suffix),
    )["input_ids"]
    return [prefix + body + suffix for body in bodies]


def yes_probability(logits: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> list[float]:
    """softmax([logit_no, logit_yes])[yes] per row of ``logits`` [N, V], as the model card computes it."""
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
    return torch.log_softmax(pair, dim=1)[:, 1].exp().tolist()


@torch.inference_mode()
def official_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    query: str,
    documents: list[str],
    *,
    batch_size: int,
    last_only: bool,
) -> list[float]:
    """The model-card loop: batches in input order, left padding; ``last_only`` asks for last-position logits only."""
    tokenizer.padding_side = "left"
    scores: list[float] = []
    for start in range(0, len(documents), batch_size):
        ids = official_ids(tokenizer, query, documents[start : start + batch_size])
        inputs = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        extra = {"logits_to_keep": 1} if last_only else {}
        logits = model(**inputs, **extra).logits[:, -1, :]  # [B, V]
        scores.extend(yes_probability(logits, tokenizer))
    return scores


# ------------------------------------------------------------------------------------------------ dense-mask packed


def split_query_part(tokenizer: PreTrainedTokenizerBase, query: str, full_ids: list[list[int]]) -> int:
    """Length of the shared query part (prefix + body up to ``<Document>:``) inside the official per-pair ids.

    Qwen's pre-tokenizer always ends a pre-token at that colon, so every pair starts with exactly these tokens.
    """
    head = PREFIX + f"<Instruct>: {INSTRUCTION}\n<Query>: {query}\n<Document>:"
    shared = tokenizer.encode(head, add_special_tokens=False)
    if any(ids[: len(shared)] != shared for ids in full_ids):
        raise RuntimeError("the official ids of some pair do not start with the shared query part")
    return len(shared)


def dense_mask_inputs(prefix: list[int], items: list[list[int]]) -> tuple[torch.Tensor, ...]:
    """[prefix ; item 1 ; item 2 ; ...] and a dense T×T additive mask: items see the prefix and themselves, causally."""
    ids = prefix + [t for item in items for t in item]
    segment = torch.tensor([0] * len(prefix) + [k + 1 for k, item in enumerate(items) for _ in item])  # [T]
    positions = list(range(len(prefix))) + [len(prefix) + i for item in items for i in range(len(item))]
    index = torch.arange(len(ids))
    causal = index[None, :] <= index[:, None]  # [T, T] (query, key)
    visible = causal & ((segment[None, :] == 0) | (segment[None, :] == segment[:, None]))
    mask = torch.zeros(len(ids), len(ids)).masked_fill_(~visible, torch.finfo(torch.float32).min)
    ends = torch.cumsum(torch.tensor([len(item) for item in items]), 0) + len(prefix) - 1  # each item's last token
    return torch.tensor([ids]), torch.tensor([positions]), mask[None, None], ends


@torch.inference_mode()
def dense_mask_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, query: str, documents: list[str], *, max_tokens: int
) -> tuple[list[float], dict[str, Any]]:
    """Packs of [query part ; documents...] under ``max_tokens``, the query part recomputed in every pack, through
    the full transformers model with a custom 4-D float mask (passed through as is) and vocabulary-wide logits."""
    full = official_ids(tokenizer, query, documents)
    split = split_query_part(tokenizer, query, full)
    prefix, items = full[0][:split], [ids[split:] for ids in full]
    plan = plan_packs([split], [0] * len(items), [len(i) for i in items], max_tokens=max_tokens)
    scores = [0.0] * len(items)
    for pack in plan:
        members = pack.groups[0].items
        input_ids, position_ids, mask, ends = dense_mask_inputs(prefix, [items[i] for i in members])
        logits = model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=False).logits
        for i, score in zip(members, yes_probability(logits[0, ends], tokenizer), strict=True):
            scores[i] = score
    return scores, {"packs": len(plan), "tokens": sum(p.num_tokens for p in plan)}


# ------------------------------------------------------------------------------------------------ peers


@dataclass
class Bench:
    path: Path
    args: argparse.Namespace
    tokenizer: PreTrainedTokenizerBase
    workloads: list[Workload]
    dtype: str = "float32"  # every peer's
    notes: list[str] = dataclasses.field(default_factory=list)


def transformers_peers(bench: Bench) -> dict[str, PeerFn]:
    model, tokenizer = load_causal_lm(bench.path, BENCH_DTYPES[bench.dtype]), bench.tokenizer
    batch_size = bench.args.batch_size

    def official(last_only: bool) -> PeerFn:
        return lambda q, docs: (
            official_scores(model, tokenizer, q, docs, batch_size=batch_size, last_only=last_only),
            {},
        )

    return {
        "official-vocab": official(last_only=False),
        "official-last": official(last_only=True),
        "dense-mask-packed": lambda q, docs: dense_mask_scores(
            model, tokenizer, q, docs, max_tokens=DEFAULT_MAX_TOKENS_PER_PACK
        ),
    }


def crossencoder_peers(bench: Bench) -> dict[str, PeerFn]:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(bench.path), device="cpu", local_files_only=True, model_kwargs={"dtype": bench.dtype})
    bench.notes.extend(check_crossencoder_ids(model, bench.tokenizer, bench.workloads))
    batch_size = bench.args.batch_size

    def predict(q: str, docs: list[str]) -> tuple[list[float], dict[str, Any]]:
        # Default activation for a LogitScore (num_labels=1) model is sigmoid(l_yes - l_no) = P(yes).
        scores = model.predict([(q, d) for d in docs], batch_size=batch_size, show_progress_bar=False)
        return scores.tolist(), {}

    return {"st-crossencoder": predict}


def our_peers(bench: Bench, quantization: str | None = None) -> dict[str, PeerFn]:
    engine = Qwen3RerankEngine.from_pretrained(
        str(bench.path), device="cpu", dtype=bench.dtype, quantization=quantization, local_files_only=True
    )

    def score(q: str, docs: list[str]) -> tuple[list[float], dict[str, Any]]:
        result = engine.score_with_meta(q, docs)
        return result.scores, dataclasses.asdict(result.meta)

    return {"ours" if quantization is None else f"ours-{quantization}": score}


def our_int8_peers(bench: Bench) -> dict[str, PeerFn]:
    return our_peers(bench, "int8")


def openvino_peers(bench: Bench) -> dict[str, PeerFn]:
    """OpenVINO with NNCF int8 weights (:mod:`openvino_peer`), the model-card prompt, right-padded batches."""
    if why := openvino_peer.missing():
        bench.notes.append(why)
        return {}
    tokenizer = bench.tokenizer
    yes_no = (tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no"))
    run, note = openvino_peer.compile_int8(bench.path, bench.args.threads, yes_no)
    bench.notes.append(note)

    def score(q: str, docs: list[str]) -> tuple[list[float], dict[str, Any]]:
        ids = official_ids(tokenizer, q, docs)
        logits, facts = openvino_peer.run_batches(run, ids, bench.args.batch_size, tokenizer.pad_token_id)
        return torch.sigmoid(torch.from_numpy(logits[:, 0] - logits[:, 1]).double()).tolist(), facts

    return {openvino_peer.PEER: score}


def crossencoder_ids(model: Any, pairs: list[tuple[str, str]], prompt: str | None = None) -> list[list[int]]:
    """The unpadded token ids CrossEncoder feeds the model for ``pairs`` (its own preprocessing, left padding)."""
    features = model.preprocess(pairs, prompt=prompt)
    return [
        ids[mask.bool()].tolist() for ids, mask in zip(features["input_ids"], features["attention_mask"], strict=True)
    ]


def check_crossencoder_ids(model: Any, tokenizer: PreTrainedTokenizerBase, workloads: list[Workload]) -> list[str]:
    """Token ids CrossEncoder feeds vs the official ones: every pair with the default instruction, a few with
    ``prompt=`` (a system message that the template turns into the instruction)."""
    notes = []
    custom = "Given a product search query, retrieve products that match it"
    for workload in workloads:
        pairs = [(workload.query, d) for d in workload.documents]
        fed, official = crossencoder_ids(model, pairs), official_ids(tokenizer, workload.query, workload.documents)
        same = sum(a == b for a, b in zip(fed, official, strict=True))
        few = pairs[:4]
        prompted = crossencoder_ids(model, few, prompt=custom) == official_ids(
            tokenizer, workload.query, [d for _, d in few], instruction=custom
        )
        notes.append(
            f"st-crossencoder token ids, workload {workload.name}: {same}/{len(pairs)} pairs equal the official ids; "
            f"with prompt=<instruction> (system role): {'equal' if prompted else 'DIFFERENT'} on {len(few)} pairs"
        )
    return notes


# ------------------------------------------------------------------------------------------------ measurement


@dataclass(frozen=True)
class WorkloadStats:
    """Token counts of the official formulation and the useful FLOPs (same numerator for every peer)."""

    query_part_tokens: int  # prefix + body up to "<Document>:"
    document_tokens: list[int]  # per document: " " + doc + suffix tokens
    padding_free_tokens: int  # what a per-pair path computes without padding
    useful_tokens: int  # the query part once plus every document
    useful_flops: float
    executed_flops: float  # what ours executes of useful_flops (single pack): the last layer reads out only


def workload_stats(tokenizer: PreTrainedTokenizerBase, workload: Workload, shape: DecoderShape) -> WorkloadStats:
    full = official_ids(tokenizer, workload.query, workload.documents)
    split = split_query_part(tokenizer, workload.query, full)
    items = [len(ids) - split for ids in full]
    return WorkloadStats(
        query_part_tokens=split,
        document_tokens=items,
        padding_free_tokens=sum(len(ids) for ids in full),
        useful_tokens=split + sum(items),
        useful_flops=useful_flops(shape, split, items),
        executed_flops=useful_flops(shape, split, items) - readout_only_savings(shape, split, items),
    )


def meta_shape(path: Path) -> DecoderShape:
    """Parameter counts without allocating weights (meta device)."""
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    with torch.device("meta"):
        return decoder_shape(AutoModelForCausalLM.from_config(config))


def run_peers(bench: Bench) -> Iterator[tuple[str, str, Measurement[tuple[list[float], dict[str, Any]]]]]:
    """(workload, peer, measurement) for every selected peer; one model group is resident at a time."""
    groups = {
        transformers_peers: ("official-vocab", "official-last", "dense-mask-packed"),
        crossencoder_peers: ("st-crossencoder",),
        openvino_peers: (openvino_peer.PEER,),
        our_peers: ("ours",),
        our_int8_peers: ("ours-int8",),
    }
    for load, names in groups.items():
        if not set(names) & set(bench.args.peers):
            continue
        peers = load(bench)
        for name, fn in peers.items():
            if name not in bench.args.peers:
                continue
            for workload in bench.workloads:
                print(f"  {workload.name}: {name} ...", flush=True)
                fn(workload.query, workload.documents[:2])  # warm-up: lazy init, thread pool, allocator
                call = functools.partial(fn, workload.query, workload.documents)
                yield workload.name, name, measure(call, bench.args.repeat)
        del peers
        release_memory()


# ------------------------------------------------------------------------------------------------ report


def peer_rows(
    workload: Workload,
    stats: WorkloadStats,
    results: dict[str, Measurement[tuple[list[float], dict[str, Any]]]],
    matmul_rate: float,
    reference_scores: list[float],
    int8_rate: float,
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """One row per peer; ``reference_scores`` are the fp32 reference's (the |Δ| column in every dtype); the int8
    peers' utilisation is against ``int8_rate``, the others' against ``matmul_rate``."""
    ours = results["ours"].median_seconds
    reference = results[reference_peer(results)]
    reference_tensor = torch.tensor(reference_scores, dtype=torch.float64)
    rows, records = [], []
    for name in (name for name in PEER_ORDER if name in results):
        m = results[name]
        seconds = m.median_seconds
        delta = (torch.tensor(m.result[0], dtype=torch.float64) - reference_tensor).abs().max().item()
        record = {
            "peer": name,
            "seconds": seconds,
            "all_seconds": m.seconds,
            "docs_per_s": len(workload.documents) / seconds,
            "tokens_per_s": stats.padding_free_tokens / seconds,
            "ours_speedup": seconds / ours,
            "speedup_vs_reference": reference.median_seconds / seconds,
            "utilisation": stats.useful_flops / seconds / ((int8_rate if is_int8(name) else matmul_rate) * 1e9),
            "rss_before_mb": m.rss_before_mb,
            "peak_rss_mb": m.peak_mb,
            "peak_is_per_call": m.peak_is_per_call,
            "max_abs_delta": delta,
            "info": m.result[1],
        }
        records.append(record)
        rows.append(
            [
                name,
                f"{record['docs_per_s']:.1f}",
                f"{record['tokens_per_s']:.0f}",
                f"{seconds:.2f}",
                format_ratio(record["ours_speedup"]),
                format_ratio(record["speedup_vs_reference"]),
                f"{100 * record['utilisation']:.1f}%",
                f"{m.rss_before_mb:.0f}",
                f"{m.peak_mb:.0f}",
                f"{delta:.1e}",
            ]
        )
    return rows, records


def is_int8(peer: str) -> bool:
    return peer.endswith("-int8")


def reference_peer(results: dict[str, Any]) -> str:
    """The first peer in table order that is not int8: official-vocab unless left out, else ours."""
    return next(name for name in PEER_ORDER if name in results and not is_int8(name))


def print_header(args: argparse.Namespace, path: Path, shape: DecoderShape) -> None:
    import sentence_transformers

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    print(
        f"machine: {cpu_name()} (flags: {cpu_flags()}); torch {torch.__version__}, transformers "
        f"{transformers.__version__}, sentence-transformers {sentence_transformers.__version__}; threads "
        f"{torch.get_num_threads()}"
    )
    print(
        f"checkpoint: {path} — random tied Qwen3ForCausalLM, {config.num_hidden_layers} layers, hidden "
        f"{config.hidden_size}, {config.num_attention_heads} heads / {config.num_key_value_heads} KV heads, head_dim "
        f"{config.head_dim}, MLP {config.intermediate_size}, vocab {config.vocab_size}, "
        f"{shape.non_embedding_params / 1e6:.1f}M non-embedding parameters"
    )
    print(
        f"peers: per-pair batch size {args.batch_size}; dense-mask and ours pack under {DEFAULT_MAX_TOKENS_PER_PACK} "
        f"tokens; timing: median of {args.repeat} run(s) after one 2-document warm-up call"
    )


def print_workload(workload: Workload, stats: WorkloadStats, results: dict[str, Measurement[Any]]) -> None:
    spec, lengths = workload.spec, sorted(stats.document_tokens)
    words = sorted(len(d.split()) for d in workload.documents)
    print(
        f"\nWorkload {spec.name} ({spec.description}): 1 query + {len(workload.documents)} documents, words/doc "
        f"median {words[len(words) // 2]} (range {words[0]}-{words[-1]}); query {workload.query!r}"
    )
    print(
        f"  tokens: query part {stats.query_part_tokens}; per document (incl. 9-token suffix) median "
        f"{lengths[len(lengths) // 2]} (range {lengths[0]}-{lengths[-1]}); padding-free {stats.padding_free_tokens}; "
        f"useful {stats.useful_tokens}; useful work {stats.useful_flops / 1e9:.1f} GFLOP"
    )
    meta = results["ours"].result[1]
    dense = results["dense-mask-packed"].result[1] if "dense-mask-packed" in results else None
    print(
        f"  ours meta: packs {meta['packs']}, tokens_computed {meta['tokens_computed']}, padding_free_tokens "
        f"{meta['padding_free_tokens']}, truncated {meta['truncated_documents']}"
        + (f"; dense-mask-packed: packs {dense['packs']}, tokens {dense['tokens']}" if dense else "")
    )


def legend(peak_is_per_call: bool, reference: str, dtype: str) -> str:
    peak = (
        "peak during the timed call (VmHWM reset via /proc/self/clear_refs just before it)"
        if peak_is_per_call
        else "process peak since start (getrusage; the per-call reset is not available here)"
    )
    return (
        "  RSS before = resident set just before the timed call (the loaded peer's weights included); peak RSS = "
        f"{peak}.\n  ours × = peer time / ours time; × vs ref = {reference} time / peer time; max |Δ| vs the fp32 "
        f"run's {reference} scores; util = useful FLOPs / time / {dtype} matmul rate (the *-int8 peers: / int8 "
        "product rate)."
    )


def executed_note(stats: WorkloadStats, ours_seconds: float, matmul_rate: float) -> str:
    share = stats.executed_flops / stats.useful_flops
    hardware = stats.executed_flops / ours_seconds / (matmul_rate * 1e9)
    return (
        f"  ours executes {stats.executed_flops / 1e9:.1f} GFLOP, {share:.0%} of the useful work (its last layer "
        f"computes queries, o_proj and MLP at the readout tokens only), so its util can exceed 100%; executed "
        f"FLOPs / time / matmul rate = {hardware:.1%}"
    )


TABLE_HEADERS = [
    "peer",
    "docs/s",
    "tokens/s",
    "time (s)",
    "ours ×",
    "× vs ref",
    "util",
    "RSS before (MB)",
    "peak RSS (MB)",
    "max |Δ| vs ref",
]


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the random 0.6B-shaped checkpoint")
    parser.add_argument("--workload", choices=["R", "S", "both"], default="both")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per peer and workload (median reported)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of the per-pair peers")
    parser.add_argument("--max-docs", type=int, default=None, help="cut each workload to this many documents")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the results to this JSON file (<stem>-bfloat16.json too)"
    )
    add_dtype_argument(parser)
    return parse_with_peers(parser, PEER_ORDER, argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    path = ensure_checkpoint(args.layers)
    shape = meta_shape(path)
    print_header(args, path, shape)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    names = ["R", "S"] if args.workload == "both" else [args.workload]
    workloads = [make_workload(WORKLOADS[n], args.max_docs) for n in names]
    stats = {w.name: workload_stats(tokenizer, w, shape) for w in workloads}
    dtypes = bench_dtypes(args.dtype)
    references: dict[str, list[float]] = {}  # fp32 scores of the first peer in table order, per workload
    if dtypes[0] != "float32":  # bf16 alone: the fp32 reference is ours in fp32 (within 1e-5 of the official)
        reference_bench = dataclasses.replace(Bench(path, args, tokenizer, workloads), dtype="float32")
        score = our_peers(reference_bench)["ours"]
        references = {w.name: score(w.query, w.documents)[0] for w in workloads}
        release_memory()
    for dtype in dtypes:
        matmul_rate, int8_rate = matmul_gflops(BENCH_DTYPES[dtype]), int8_matmul_gflops()
        print(
            f"\n=== every peer in {dtype}; {dtype} matmul {matmul_rate:.1f} GFLOP/s (4096² F.linear, best of 3); int8 "
            f"product {int8_rate:.1f} GFLOP/s (4096² oneDNN u8×s8, best of 3)"
        )
        bench = Bench(path, args, tokenizer, workloads, dtype=dtype)
        results: dict[str, dict[str, Measurement[Any]]] = {w.name: {} for w in workloads}
        for workload_name, peer, measurement in run_peers(bench):
            results[workload_name][peer] = measurement

        print()
        for note in bench.notes:
            print(note)
        report: dict[str, Any] = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "dtype": dtype,
            "cpu_flags": cpu_flags(),
            "matmul_gflops": matmul_rate,
            "int8_matmul_gflops": int8_rate,
            "non_embedding_params": shape.non_embedding_params,
            "workloads": {},
        }
        for workload in workloads:
            s, measured = stats[workload.name], results[workload.name]
            reference = reference_peer(measured)
            references.setdefault(workload.name, measured[reference].result[0])
            print_workload(workload, s, measured)
            rows, records = peer_rows(workload, s, measured, matmul_rate, references[workload.name], int8_rate)
            print(legend(all(m.peak_is_per_call for m in measured.values()), reference, dtype))
            print(format_table(TABLE_HEADERS, rows))
            print(executed_note(s, measured["ours"].median_seconds, matmul_rate))
            report["workloads"][workload.name] = {**dataclasses.asdict(s), "query": workload.query, "peers": records}
        if args.json is not None:
            dtype_json_path(args.json, dtype, dtypes).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
