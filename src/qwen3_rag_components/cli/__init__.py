"""``qwen3-rag``: rerank and embed texts from the command line, and run the RAG demo.

    qwen3-rag rerank --query "What is the capital of China?" docs.txt --top-k 5
    qwen3-rag embed docs.jsonl --output vectors.npy
    qwen3-rag demo --framework langchain

Exit codes: 0 success, 1 a runtime error (unreadable or empty input, bad JSONL line, model load failure), 2 a usage
error (argparse), 130 interrupted. Errors are one ``qwen3-rag: error: ...`` line on stderr, never a traceback.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
