"""Retrieve-then-rerank with Haystack: Qwen3 embeddings in an in-memory store, then the Qwen3 reranker.

    python examples/haystack_rag.py [EMBEDDER] [RERANKER]

Models: the arguments, else $QWEN3_EMBEDDER / $QWEN3_RERANKER, else the official 0.6B hub ids (hub id or local folder).
"""

from __future__ import annotations

import os
import sys

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from qwen3_rag_components.haystack import Qwen3DocumentEmbedder, Qwen3Ranker, Qwen3TextEmbedder

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

    store = InMemoryDocumentStore()
    indexer = Qwen3DocumentEmbedder(embedder, progress_bar=False)
    store.write_documents(indexer.run(documents=[Document(content=text) for text in DOCUMENTS])["documents"])

    query = Pipeline()
    query.add_component("text_embedder", Qwen3TextEmbedder(embedder))  # shares the weights loaded by the indexer
    query.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=4))
    query.add_component("ranker", Qwen3Ranker(reranker, top_k=2))
    query.connect("text_embedder.embedding", "retriever.query_embedding")
    query.connect("retriever.documents", "ranker.documents")

    question = "How are default argument values evaluated?"
    result = query.run({"text_embedder": {"text": question}, "ranker": {"query": question}})
    print(question)
    for doc in result["ranker"]["documents"]:
        print(f"{doc.score:.3f}  {doc.content}")


if __name__ == "__main__":
    main(sys.argv)
