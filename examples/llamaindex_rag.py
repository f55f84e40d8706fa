"""Retrieve-then-rerank with LlamaIndex: a VectorStoreIndex on Qwen3Embedding, reranked by Qwen3Rerank.

    python examples/llamaindex_rag.py [EMBEDDER] [RERANKER]

Models: the arguments, else $QWEN3_EMBEDDER / $QWEN3_RERANKER, else the official 0.6B hub ids (hub id or local folder).
The query engine runs with LlamaIndex's MockLLM, so the example prints the reranked sources and no answer; pass a real
LLM (e.g. llama_index.llms.openai.OpenAI) as llm= to get an answer written from them.
"""

from __future__ import annotations

import os
import sys

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.llms import MockLLM

from qwen3_rag_components.llamaindex import Qwen3Embedding, Qwen3Rerank

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

    documents = [Document(text=text, id_=str(i)) for i, text in enumerate(DOCUMENTS)]
    index = VectorStoreIndex.from_documents(documents, embed_model=Qwen3Embedding(model=embedder))
    query_engine = index.as_query_engine(
        llm=MockLLM(),  # a stand-in for your LLM: this example prints the reranked sources, not the answer
        similarity_top_k=4,  # retrieve 4, keep the best 2
        node_postprocessors=[Qwen3Rerank(model=reranker, top_n=2)],
    )

    question = "How are default argument values evaluated?"
    print(question)
    for source in query_engine.query(question).source_nodes:
        print(f"{source.score:.3f}  {source.node.get_content()}")


if __name__ == "__main__":
    main(sys.argv)
