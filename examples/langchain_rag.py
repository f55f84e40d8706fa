"""Retrieve-then-rerank with LangChain: an InMemoryVectorStore on Qwen3Embeddings, reranked by Qwen3Reranker.

    python examples/langchain_rag.py [EMBEDDER] [RERANKER]

Models: the arguments, else $QWEN3_EMBEDDER / $QWEN3_RERANKER, else the official 0.6B hub ids (hub id or local folder).
Needs langchain-classic for ContextualCompressionRetriever.
"""

from __future__ import annotations

import os
import sys

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from qwen3_rag_components.langchain import Qwen3Embeddings, Qwen3Reranker

DOCUMENTS = [
    "The with statement wraps a block in the methods of a context manager, so cleanup always runs.",
    "Default parameter values are evaluated once, when the function definition is executed.",
    "The operators is and is not test for object identity; == compares values.",
    "list.append(x) adds x to the end of the list.",
    "A try statement's finally clause runs whether or not an exception occurred.",
    "Beijing is the capital of China.",
]


def main(argv: list[str]) -> None:
    embedder = argv[1] if len(argv) > 1 else os.environ.get("QWEN3_EMBEDDER", "Qwen/Qwen3-Embedding-0.6B")
    reranker = argv[2] if len(argv) > 2 else os.environ.get("QWEN3_RERANKER", "Qwen/Qwen3-Reranker-0.6B")

    store = InMemoryVectorStore(embedding=Qwen3Embeddings(model=embedder))
    store.add_documents([Document(text, id=str(i)) for i, text in enumerate(DOCUMENTS)])
    retriever = ContextualCompressionRetriever(
        base_compressor=Qwen3Reranker(model=reranker, top_n=2),
        base_retriever=store.as_retriever(search_kwargs={"k": 4}),  # retrieve 4, keep the best 2
    )

    question = "What is the difference between is and ==?"
    print(question)
    for doc in retriever.invoke(question):
        print(f"{doc.metadata['relevance_score']:.3f}  {doc.page_content}")


if __name__ == "__main__":
    main(sys.argv)
