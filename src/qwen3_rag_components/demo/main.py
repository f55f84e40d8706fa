"""The demo's command line and its printed report."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from ..engine import RunMeta
from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_RERANKER
from .corpus import Passage, load_passages
from .models import (
    DEFAULT_RANDOM_GEOMETRY,
    RANDOM_GEOMETRIES,
    DemoError,
    Models,
    cache_root,
    models_or_random,
    random_models,
)
from .pipelines import RERANK_K, RETRIEVE_K, ModelLoadError, Report, run_haystack, run_langchain

DEFAULT_QUESTIONS = (
    "How do I add an item to the end of a list?",
    "What does the with statement do?",
    "How are default argument values evaluated?",
    "What is the difference between is and ==?",
    "How do I make sure cleanup code runs even if an exception is raised?",
    "How do I format a number with two decimal places?",
)


def describe(meta: RunMeta) -> str:
    seconds = meta.elapsed_ms / 1000
    rate = f"{meta.documents / seconds:,.1f} docs/s, {meta.tokens_computed / seconds:,.0f} tokens/s" if seconds else ""
    return (
        f"{meta.elapsed_ms:,.0f} ms, {meta.packs} pack{'s' * (meta.packs != 1)}, "
        f"{meta.documents} text{'s' * (meta.documents != 1)}, "
        f"{meta.tokens_computed:,} tokens computed (per-pair: {meta.padding_free_tokens:,}), "
        f"{meta.truncated_documents} truncated, {rate}"
    )


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_report(report: Report, framework: str, models: Models, passages: list[Passage]) -> None:
    meta = report.index_meta
    assert meta is not None
    print(f"Models loaded in {report.load_s:.1f} s ({meta.device}, {meta.dtype})")
    print(f"Indexed {len(passages)} passages in {report.index_s:.1f} s = {len(passages) / report.index_s:,.1f} docs/s")
    print(f"  embedder meta: {describe(meta)}")
    retrieval = "InMemoryEmbeddingRetriever" if framework == "haystack" else "InMemoryVectorStore retriever"
    print(f"\nQuestions: query embedding → {retrieval} (top {RETRIEVE_K}) → reranker (top {RERANK_K})")
    for answer in report.answers:
        print(f"\nQ: {answer.question}  [{answer.seconds * 1000:,.0f} ms]")
        for rank, hit in enumerate(answer.hits, 1):
            print(f"  {rank}. {hit.score:.3f}  [{hit.topic}] {_snippet(hit.text)}")
        print(f"  query embedding meta: {describe(answer.query_meta)}")
        print(f"  reranker meta: {describe(answer.rerank_meta)}")
    if models.random:
        print("\n(Random weights: the rankings above mean nothing; the pipeline, the timings and the meta are real.)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="qwen3_rag_components.demo",
        description="A RAG run over Python's help topics with the Qwen3 embedder and reranker.",
        epilog=textwrap.dedent(
            """\
            Without the models (offline, nothing cached) the demo runs on random Qwen3 checkpoints written under
            --cache-dir: rankings are then meaningless, pipeline, timings and meta are real."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--framework", choices=("haystack", "langchain"), default="haystack")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="hub id or local folder (default: %(default)s)")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER, help="hub id or local folder (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA if available, else CPU)")
    parser.add_argument("--max-passages", type=int, default=None, help="index an even spread of N passages only")
    parser.add_argument("--questions", nargs="+", default=None, help="questions to ask instead of the built-in ones")
    parser.add_argument("--local-files-only", action="store_true", help="never download; use folders or the cache")
    parser.add_argument(
        "--random-geometry",
        choices=sorted(RANDOM_GEOMETRIES),
        default=DEFAULT_RANDOM_GEOMETRY,
        help="shape of the random fallback checkpoints (default: %(default)s)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"random checkpoints go here ({cache_root()})")
    args = parser.parse_args(argv)
    if args.max_passages is not None and args.max_passages < 1:
        parser.error("--max-passages must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 on success, 1 when a dependency is missing or no model loads, 2 on bad arguments."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # --help, or an argparse error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return _run(args)
    except (DemoError, ModelLoadError) as error:  # ModelLoadError here: even the random checkpoints failed to load
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    models = models_or_random(
        args.embedder,
        args.reranker,
        args.local_files_only,
        cache_dir=args.cache_dir,
        geometry=args.random_geometry,
        notice=sys.stdout,
    )
    passages = load_passages(args.max_passages)
    questions = args.questions or list(DEFAULT_QUESTIONS)
    topics = len({p.topic for p in passages})
    print(f"Corpus: {len(passages)} passages from {topics} Python help topics (pydoc_data.topics)")
    label = " (RANDOM weights)" if models.random else ""
    print(f"Framework: {args.framework}; embedder: {models.embedder}; reranker: {models.reranker}{label}")
    run = run_haystack if args.framework == "haystack" else run_langchain
    try:
        report = run(passages, questions, models, args.device)
    except ModelLoadError as error:
        if models.random:
            raise
        print(f"Official models failed to load ({_snippet(str(error), 200)}): running on RANDOM checkpoints.")
        models = random_models(args.cache_dir, args.random_geometry)
        report = run(passages, questions, models, args.device)
    print_report(report, args.framework, models, passages)
    print(f"\nTotal {time.perf_counter() - started:.1f} s")
    return 0
