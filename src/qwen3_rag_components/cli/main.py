"""The commands, the parser and the entry point of ``qwen3-rag``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .. import __version__
from ..engine import EmbedOptions, EngineHolder, LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, RerankOptions
from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_MAX_TOKENS_PER_PACK, DEFAULT_RERANKER, chunking_of
from ..engine.placement import DTYPES
from ..engine.precision import PRECISIONS
from ..engine.quantize import QUANTIZATIONS
from ..engine.service import Embedder, Reranker
from .serve import add_serve_command
from .texts import PROG, CliError, float32_values, read_texts, report, show_progress, write_jsonl

T = TypeVar("T")

EXAMPLES = """examples:
  qwen3-rag rerank --query "What is the capital of China?" docs.txt --top-k 5
  cat docs.txt | qwen3-rag rerank --query "capital of China" --model ./my-reranker --local-files-only
  qwen3-rag embed docs.jsonl --output vectors.npy
  qwen3-rag embed --query --dimensions 256 queries.txt
  qwen3-rag demo --framework langchain
  qwen3-rag serve --reranker Qwen/Qwen3-Reranker-0.6B --embedder Qwen/Qwen3-Embedding-0.6B --port 8000

exit codes: 0 success, 1 runtime error (unreadable, empty or invalid input; model load failure), 2 usage error,
130 interrupted."""


# --- commands ---------------------------------------------------------------------------------------------------


def load_spec(args: argparse.Namespace) -> LoadSpec:
    return LoadSpec(
        args.model,
        device=args.device,
        dtype=args.dtype,
        local_files_only=args.local_files_only,
        quantization=args.quantization,
    )


def timed_load(load: Callable[[], T]) -> tuple[T, float]:
    """``load()`` and its time in ms; OSError/ValueError (bad path, not Qwen3, no CUDA) reach main()."""
    if not sys.stderr.isatty():
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" bars would only clutter logs
    start = time.perf_counter()
    engine = load()
    return engine, (time.perf_counter() - start) * 1000


def run_rerank(args: argparse.Namespace) -> int:
    documents = read_texts(args.file, args.format)
    options = RerankOptions(
        instruction=args.instruction,
        max_tokens_per_pack=args.max_tokens_per_pack,
        chunking=chunking_of(args.max_tokens_per_doc, args.chunk_overlap),
    )
    reranker = Reranker(EngineHolder(Qwen3RerankEngine, load_spec(args), options))
    _, load_ms = timed_load(lambda: reranker.holder.engine)
    ranking = reranker.rank(args.query, documents, top_k=args.top_k, progress=show_progress(documents))
    write_jsonl({"index": i, "score": score, "text": documents[i]} for i, score in ranking.ranked())
    if args.verbose:
        report(ranking.meta, load_ms)
    return 0


def run_embed(args: argparse.Namespace) -> int:
    if args.instruction is not None and not args.query:
        raise CliError("--instruction applies to queries only; add --query to embed the texts as queries", code=2)
    texts = read_texts(args.file, args.format)
    if args.output is not None and not args.output.resolve().parent.is_dir():
        raise CliError(f"cannot write {args.output}: its folder does not exist")
    options = EmbedOptions(
        instruction=args.instruction,
        dimensions=args.dimensions,
        normalize=not args.no_normalize,
        precision=args.precision,
        ranges=read_ranges(args.ranges),
        max_tokens_per_pack=args.max_tokens_per_pack,
    )
    embedder = Embedder(EngineHolder(Qwen3EmbedEngine, load_spec(args), options))
    _, load_ms = timed_load(lambda: embedder.holder.engine)
    kind = "queries" if args.query else "documents"
    result = embedder.embed(texts, kind=kind, progress=show_progress(texts))
    embeddings = result.embeddings  # [N, d] float32 (or the precision's form), input order
    values = float32_values if args.precision == "float32" else np.ndarray.tolist
    if args.output is None:
        write_jsonl({"index": i, "embedding": values(row)} for i, row in enumerate(embeddings))
    else:
        with args.output.open("wb") as file:  # np.save(path) would append ".npy" to other names
            np.save(file, embeddings)
    if args.verbose:
        report(result.meta, load_ms)
    return 0


def read_ranges(path: Path | None) -> np.ndarray | None:
    """``--ranges``: a ``[2, d]`` .npy of each dimension's minima and maxima."""
    if path is None:
        return None
    try:
        return np.load(path)
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read --ranges {path}: {error}; save a [2, d] array with np.save", code=2) from error


def run_demo(argv: list[str]) -> int:
    try:
        from .. import demo
    except ImportError as error:
        raise CliError(f"the demo cannot be imported: {error}") from error
    return demo.main(argv)


# --- parser -----------------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def add_command(commands: Any, name: str, summary: str, example: str, **kwargs: Any) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def add_input_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help=f"{what}: one per line (blank lines skipped), or JSONL (*.jsonl: a JSON string or an object with a "
        '"text" field per line); "-" or absent: stdin',
    )
    parser.add_argument(
        "--format", choices=("text", "jsonl"), default=None, help="input format (default: jsonl for *.jsonl, else text)"
    )


def add_model_options(parser: argparse.ArgumentParser, default_model: str) -> None:
    group = parser.add_argument_group("model options")
    group.add_argument("--model", default=default_model, help=f"hub id or local folder (default: {default_model})")
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")
    group.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default=None,
        help="default: bfloat16 on CUDA and on CPUs where it measures faster, else float32; $QWEN3_RAG_DTYPE sets it",
    )
    group.add_argument(
        "--quantization",
        choices=list(QUANTIZATIONS),
        default=None,
        help="int8: int8 weights and activations in every layer's projections but the first layer's, quantized at load "
        "(CPU only)",
    )
    group.add_argument(
        "--max-tokens-per-pack",
        type=positive_int,
        default=DEFAULT_MAX_TOKENS_PER_PACK,
        metavar="N",
        help=f"token budget of one forward pass (default: {DEFAULT_MAX_TOKENS_PER_PACK})",
    )
    group.add_argument("--local-files-only", action="store_true", help="never touch the network; use the local cache")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print the run's meta (packs, tokens, elapsed) as one stderr line"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Qwen3 reranking and embedding from the command line, an HTTP server, and the RAG demo.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rerank = add_command(
        commands,
        "rerank",
        "Score documents against a query; JSON lines {index, score, text}, best first.",
        f'{PROG} rerank --query "What is the capital of China?" docs.txt --top-k 5',
    )
    rerank.add_argument("--query", required=True, help="the query to score the documents against")
    add_input_options(rerank, "documents")
    rerank.add_argument("--top-k", type=positive_int, default=None, metavar="N", help="print only the N best")
    rerank.add_argument("--instruction", default=None, help="the <Instruct> text (default: the web search one)")
    rerank.add_argument(
        "--max-tokens-per-doc",
        type=positive_int,
        default=None,
        metavar="N",
        help="score a longer document in windows of N tokens, by its best window (default: the official end-cut)",
    )
    rerank.add_argument(
        "--chunk-overlap",
        type=int,
        default=0,
        metavar="N",
        help="tokens each window repeats (with --max-tokens-per-doc)",
    )
    add_model_options(rerank, DEFAULT_RERANKER)
    rerank.set_defaults(run=run_rerank)

    embed = add_command(
        commands,
        "embed",
        "Embed texts; JSON lines {index, embedding} on stdout, or a float32 .npy file with --output.",
        f"{PROG} embed docs.jsonl --dimensions 256 --output vectors.npy",
    )
    add_input_options(embed, "texts")
    embed.add_argument(
        "--output", "-o", type=Path, default=None, metavar="PATH", help="write the [N, d] vectors as .npy"
    )
    embed.add_argument("--query", action="store_true", help='embed as queries ("Instruct: ...\\nQuery:{text}")')
    embed.add_argument("--instruction", default=None, help="the query instruction (with --query)")
    embed.add_argument("--dimensions", type=positive_int, default=None, metavar="D", help="MRL: keep the first D")
    embed.add_argument("--no-normalize", action="store_true", help="skip the L2 normalisation")
    embed.add_argument(
        "--precision", choices=PRECISIONS, default="float32", help="quantized output, as in sentence-transformers"
    )
    embed.add_argument(
        "--ranges", type=Path, default=None, metavar="NPY", help="int8/uint8: a [2, d] .npy of minima and maxima"
    )
    add_model_options(embed, DEFAULT_EMBEDDER)
    embed.set_defaults(run=run_embed)

    add_serve_command(commands, positive_int)

    # `demo` is dispatched in main() before parsing: all its arguments, --help included, go to demo.main().
    commands.add_parser("demo", help="Run the RAG demo (its options: qwen3-rag demo --help).", add_help=False)

    return parser


# --- entry point ------------------------------------------------------------------------------------------------


def fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever the message
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["demo"]:
            return run_demo(argv[1:])
        args = build_parser().parse_args(argv)
        return args.run(args)
    except CliError as error:
        return fail(str(error), error.code)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly; point stdout at devnull so the final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as error:  # model load failures and invalid engine options
        return fail(str(error), 1)
