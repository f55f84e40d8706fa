"""Clients nobody here wrote, against a real ``qwen3-rag serve`` process: the same numbers as the engine in-process.

The server computes in another process, so values agree within the documented cross-process bound (1e-5 in fp32;
the same pack layout gives the same bits, see docs/fidelity.md).
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from haystack import Document
from haystack.components.embedders import OpenAIDocumentEmbedder, OpenAITextEmbedder
from haystack.utils import Secret

from .conftest import API_KEY, AUTH

TOLERANCE = 1e-5
QUERY = "What is the capital of China?"
DOCUMENTS = ["The capital of China is Beijing.", "Gravity pulls objects together.", "北京是中国的首都。"]
# The official query format is "Instruct: {instruction}\nQuery:{query}": a client's prefix can write it.
QUERY_PREFIX = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def close(actual, expected) -> bool:
    return float(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)).max()) <= TOLERANCE


def test_the_openai_sdk(server, reference_embedder):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)
    expected = reference_embedder.encode(DOCUMENTS, dimensions=16).embeddings
    response = client.embeddings.create(model="qwen3-embedding", input=DOCUMENTS, dimensions=16)  # base64, decoded
    assert close([d.embedding for d in response.data], expected)
    response = client.embeddings.create(model="m", input=DOCUMENTS, dimensions=16, encoding_format="float")
    assert close([d.embedding for d in response.data], expected)
    # Asked for explicitly, base64 comes back as the SDK received it: little-endian float32 bytes.
    response = client.embeddings.create(model="m", input=DOCUMENTS, dimensions=16, encoding_format="base64")
    assert close([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in response.data], expected)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong").embeddings.create(model="m", input="x")
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions=65 is out of range"):
        client.embeddings.create(model="qwen3-embedding", input="x", dimensions=65)


def test_haystack_openai_embedders(server, reference_embedder):
    common = {"api_key": Secret.from_token(API_KEY), "model": "qwen3-embedding", "api_base_url": f"{server.url}/v1"}
    documents = OpenAIDocumentEmbedder(**common, progress_bar=False).run([Document(content=d) for d in DOCUMENTS])
    assert close([d.embedding for d in documents["documents"]], reference_embedder.encode(DOCUMENTS).embeddings)
    query = OpenAITextEmbedder(**common, prefix=QUERY_PREFIX).run(QUERY)["embedding"]
    assert close(query, reference_embedder.encode([QUERY], is_query=True).embeddings[0])


def test_langchain_openai_embeddings(server, reference_embedder):
    langchain_openai = pytest.importorskip("langchain_openai")
    embeddings = langchain_openai.OpenAIEmbeddings(
        model="qwen3-embedding", base_url=f"{server.url}/v1", api_key=API_KEY, check_embedding_ctx_length=False
    )
    assert close(embeddings.embed_documents(DOCUMENTS), reference_embedder.encode(DOCUMENTS).embeddings)
    assert close(
        embeddings.embed_query(QUERY_PREFIX + QUERY), reference_embedder.encode([QUERY], is_query=True).embeddings[0]
    )


def test_the_cohere_sdk_v2_rerank(server, reference_reranker):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key=API_KEY, base_url=server.url)
    response = client.rerank(model="qwen3-reranker", query=QUERY, documents=DOCUMENTS, top_n=2)
    expected = reference_reranker.score(QUERY, DOCUMENTS)
    assert [r.index for r in response.results] == sorted(range(3), key=lambda i: -expected[i])[:2]
    assert all(abs(r.relevance_score - expected[r.index]) <= TOLERANCE for r in response.results)


def test_tei_routes_over_http(server, reference_reranker, reference_embedder):
    with httpx.Client(base_url=server.url, headers=AUTH) as http:
        ranked = http.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS}).json()
        vectors = http.post("/embed", json={"inputs": DOCUMENTS}).json()
        assert http.post("/embed", json={"inputs": []}).status_code == 422
        assert http.get("/health").json()["status"] == "ok"
    expected = reference_reranker.score(QUERY, DOCUMENTS)
    assert all(abs(r["score"] - expected[r["index"]]) <= TOLERANCE for r in ranked)
    assert close(vectors, reference_embedder.encode(DOCUMENTS).embeddings)
