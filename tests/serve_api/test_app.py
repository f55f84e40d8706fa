"""The routes in-process: the engines' numbers in each API's shape, every refusal a 4xx that names the field."""

from __future__ import annotations

import asyncio
import base64
import sys

import httpx
import numpy as np
import pytest
from prometheus_client import generate_latest

from qwen3_rag_components import RerankOptions
from qwen3_rag_components.cli.main import build_parser
from qwen3_rag_components.serve import ServeLimits
from qwen3_rag_components.serve.admission import Admission
from qwen3_rag_components.serve.errors import RequestError
from qwen3_rag_components.serve.metrics import Metrics

from .conftest import AUTH, make_client

QUERY = "What is the capital of China?"
DOCUMENTS = ["The capital of China is Beijing.", "Gravity pulls.", "北京是中国的首都。", "Gravity pulls.", ""]
INSTRUCTION = "Find the passage that names a capital"


def post(client, path: str, body: dict) -> httpx.Response:
    return client.post(path, json=body, headers=AUTH)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_rerank_gives_the_engines_scores_best_first(client, reference_reranker, path):
    expected = reference_reranker.score(QUERY, DOCUMENTS)
    body = post(client, path, {"model": "any", "query": QUERY, "documents": DOCUMENTS}).json()
    assert [r["index"] for r in body["results"]] == sorted(range(5), key=lambda i: -expected[i])
    assert {r["index"]: r["relevance_score"] for r in body["results"]} == dict(enumerate(expected))
    assert "document" not in body["results"][0]
    engine_meta = body["meta"]["engine"]
    assert (engine_meta["documents"], engine_meta["unique_documents"], engine_meta["packs"]) == (5, 4, 1)
    assert body["meta"]["billed_units"] == {"search_units": 1}


def test_rerank_top_n_documents_as_objects_instruction_and_return_documents(client, reference_reranker):
    documents = [DOCUMENTS[0], {"text": DOCUMENTS[1]}, DOCUMENTS[2]]
    request = {"query": QUERY, "documents": documents, "top_n": 2, "return_documents": True, "instruction": INSTRUCTION}
    body = post(client, "/v1/rerank", request).json()
    expected = reference_reranker.score(QUERY, DOCUMENTS[:3], instruction=INSTRUCTION)
    best = sorted(range(3), key=lambda i: -expected[i])[:2]
    assert [(r["index"], r["relevance_score"], r["document"]["text"]) for r in body["results"]] == [
        (i, expected[i], DOCUMENTS[i]) for i in best
    ]


def test_tei_rerank_raw_scores_and_text(client, reference_reranker):
    logits = reference_reranker.score(QUERY, DOCUMENTS, return_logits=True)
    body = post(client, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True, "return_text": True})
    assert body.json() == [
        {"index": i, "score": logits[i], "text": DOCUMENTS[i]} for i in sorted(range(5), key=lambda i: -logits[i])
    ]


def test_openai_embeddings_float_and_base64_documents_and_queries(client, reference_embedder):
    documents = reference_embedder.encode(DOCUMENTS, dimensions=8).embeddings
    body = post(client, "/v1/embeddings", {"input": DOCUMENTS, "dimensions": 8, "model": "mine"}).json()
    assert body["model"] == "mine" and body["object"] == "list"
    assert [d["index"] for d in body["data"]] == list(range(5))
    assert np.array_equal(np.array([d["embedding"] for d in body["data"]], np.float32), documents)
    assert body["usage"]["prompt_tokens"] == body["meta"]["padding_free_tokens"] > 0

    queries = reference_embedder.encode([QUERY], is_query=True, instruction=INSTRUCTION).embeddings
    request = {"input": QUERY, "instruction": INSTRUCTION, "encoding_format": "base64"}
    encoded = post(client, "/v1/embeddings", request).json()["data"][0]["embedding"]
    assert np.array_equal(np.frombuffer(base64.b64decode(encoded), "<f4"), queries[0])
    default_query = reference_embedder.encode([QUERY], is_query=True).embeddings[0]
    as_query = post(client, "/v1/embeddings", {"input": [QUERY], "input_type": "query"}).json()["data"][0]
    assert np.array_equal(np.array(as_query["embedding"], np.float32), default_query)


def test_openai_embeddings_precision_as_sentence_transformers(client, reference_embedder):
    from sentence_transformers.util.quantization import quantize_embeddings

    floats = reference_embedder.encode(DOCUMENTS, dimensions=8).embeddings
    ranges = [floats.min(axis=0).tolist(), floats.max(axis=0).tolist()]
    request = {"input": DOCUMENTS, "dimensions": 8, "precision": "int8", "ranges": ranges}
    vectors = [d["embedding"] for d in post(client, "/v1/embeddings", request).json()["data"]]
    assert vectors == quantize_embeddings(floats, "int8", ranges=np.array(ranges)).tolist()
    request = {"input": DOCUMENTS, "dimensions": 8, "precision": "ubinary", "encoding_format": "base64"}
    encoded = [d["embedding"] for d in post(client, "/v1/embeddings", request).json()["data"]]
    packed = np.array([np.frombuffer(base64.b64decode(e), np.uint8) for e in encoded])
    assert np.array_equal(packed, quantize_embeddings(floats, "ubinary"))


def test_tei_embed(client, reference_embedder):
    raw = reference_embedder.encode(DOCUMENTS[:2], dimensions=4, normalize=False).embeddings
    body = post(client, "/embed", {"inputs": DOCUMENTS[:2], "dimensions": 4, "normalize": False}).json()
    assert np.array_equal(np.array(body, np.float32), raw)
    query = reference_embedder.encode([QUERY], is_query=True).embeddings
    assert np.array_equal(np.array(post(client, "/embed", {"inputs": QUERY, "prompt_name": "query"}).json()), query)


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "message"),
    [
        ("/v1/rerank", {"query": QUERY}, 422, "documents", "documents: Field required."),
        ("/v1/rerank", {"query": QUERY, "documents": ["a", 3]}, 422, "documents[1]", "Input should be a valid string"),
        ("/v1/rerank", {"query": 5, "documents": ["a"]}, 422, "query", "query: Input should be a valid string."),
        ("/v1/rerank", {"query": QUERY, "documents": []}, 422, "documents", "documents is empty"),
        ("/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": 0}, 422, "top_n", "greater than or equal to 1"),
        ("/v1/rerank", {"query": QUERY, "documents": ["a"] * 51}, 413, "documents", "at most 50 per request"),
        ("/v1/rerank", {"query": "q" * 2001, "documents": ["a"]}, 413, "query", "at most 2000 per text"),
        ("/rerank", {"query": QUERY, "texts": ["a", "b" * 2001]}, 413, "texts[1]", "(--max-chars)"),
        ("/v1/embeddings", {"input": []}, 422, "input", "input is empty"),
        ("/v1/embeddings", {"input": [[1, 2]]}, 422, "input[0]", "Input should be a valid string"),
        ("/v1/embeddings", {"input": "a", "dimensions": 65}, 422, "dimensions", "dimensions=65 is out of range"),
        ("/v1/embeddings", {"input": "a", "encoding_format": "hex"}, 422, "encoding_format", "'float' or 'base64'"),
        ("/v1/embeddings", {"input": "a", "precision": "int4"}, 422, "precision", "'float32', 'int8', 'uint8'"),
        ("/v1/embeddings", {"input": "a", "precision": "int8"}, 422, "precision", "one vector has none; pass ranges"),
        ("/v1/embeddings", {"input": "a", "precision": "int8", "ranges": [[0]]}, 422, "ranges", "got shape (1, 1)"),
        ("/embed", {"inputs": "a", "prompt_name": "passage"}, 422, "prompt_name", "'query' or 'document'"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field_and_the_next_request_succeeds(
    client, path, body, status, param, message
):
    response = post(client, path, body)
    assert response.status_code == status
    error = response.json()
    assert error["error"]["param"] == param and message in error["message"] == error["error"]["message"]
    assert post(client, "/v1/rerank", {"query": QUERY, "documents": ["a"]}).status_code == 200


def test_malformed_json_and_oversized_bodies(reranker_model):
    client = make_client(reranker_model, None, limits=ServeLimits(max_body_bytes=300))
    broken = client.post("/v1/rerank", content=b'{"query": ', headers={**AUTH, "content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["message"]
    big = client.post("/v1/rerank", json={"query": QUERY, "documents": ["x" * 400]}, headers=AUTH)
    assert big.status_code == 413 and "limit of 300 bytes (--max-body-bytes)" in big.json()["message"]
    chunked = client.post(
        "/v1/rerank", content=iter([b'{"query": "q", "documents": ["', b"x" * 400, b'"]}']), headers=AUTH
    )
    assert chunked.status_code == 413  # no content-length: counted while read
    assert client.post("/v1/rerank", json={"query": QUERY, "documents": ["a"]}, headers=AUTH).status_code == 200
    missing = client.post("/v1/embeddings", json={"input": "a"}, headers=AUTH)
    assert missing.status_code == 404 and "start it with --embedder" in missing.json()["message"]


def test_tei_truncate_false_refuses_what_the_official_rule_would_cut(reranker_model, embedder_model):
    client = make_client(reranker_model, embedder_model, rerank_options=RerankOptions(max_length=80))
    state = client.app.state.serve
    long = "word " * 10_000  # past the embedder's max_length too
    for route, field, model in (("/rerank", "texts", state.reranker), ("/embed", "inputs", state.embedder)):
        scheduler = model.holder.engine.scheduler
        packs = scheduler.packs_run
        refused = post(client, route, {"query": QUERY, field: ["short", long]} if field == "texts" else {field: [long]})
        assert refused.status_code == 413 and '"truncate": true' in refused.json()["message"]
        assert refused.json()["error"]["param"] == field
        assert scheduler.packs_run == packs  # decided from the token counts: no pack ran
    assert post(client, "/rerank", {"query": QUERY, "texts": ["short", long], "truncate": True}).status_code == 200


def test_admission_refuses_past_its_limits_with_retry_after():
    metrics = Metrics()
    admission = Admission(max_requests=2, max_queued_tokens=100, metrics=metrics)
    with admission.request(), admission.request():
        with pytest.raises(RequestError) as refused, admission.request():
            pass
        assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
        assert "2 requests are in flight" in refused.value.message
    refusal = pytest.raises(RequestError, match="500 tokens are queued and this request adds 1")
    with admission.tokens(500), refusal, admission.tokens(1):  # the 500 alone: admitted whatever its size
        pass
    with admission.tokens(60), admission.tokens(40):  # up to the limit
        assert admission.queued_tokens == 100
    assert (admission.requests, admission.queued_tokens) == (0, 0)  # every slot given back
    text = generate_latest(metrics.registry).decode()
    assert 'qwen3_rag_rejected_requests_total{limit="requests"} 1.0' in text
    assert 'qwen3_rag_rejected_requests_total{limit="tokens"} 1.0' in text and "qwen3_rag_queued_tokens 0.0" in text


def test_a_429_is_json_with_retry_after(reranker_model):
    client = make_client(reranker_model, None, limits=ServeLimits(max_concurrent_requests=1))
    with client.app.state.serve.admission.request():  # one request in flight
        response = post(client, "/v1/rerank", {"query": QUERY, "documents": ["a"]})
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert (
        response.json()["error"]["type"] == "overloaded" and "(--max-concurrent-requests)" in response.json()["message"]
    )
    assert post(client, "/v1/rerank", {"query": QUERY, "documents": ["a"]}).status_code == 200


def test_an_api_key_is_required_on_every_route_but_health(client):
    for method, path in [
        ("post", "/v1/rerank"),
        ("post", "/v1/embeddings"),
        ("get", "/v1/models"),
        ("get", "/metrics"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key"}):
            response = getattr(client, method)(path, headers=headers, **({"json": {}} if method == "post" else {}))
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", (path, headers)
    assert client.get("/health").json()["status"] == "ok"
    assert [m["object"] for m in client.get("/v1/models", headers=AUTH).json()["data"]] == ["model", "model"]


def test_metrics_count_requests_and_engine_work(client):
    post(client, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS})
    text = client.get("/metrics", headers=AUTH).text
    assert 'qwen3_rag_requests_total{route="/v1/rerank",status="200"}' in text
    assert "qwen3_rag_documents_total" in text and "qwen3_rag_compute_seconds_total" in text


@pytest.mark.asyncio
async def test_concurrent_requests_share_packs_and_get_their_own_results(client, reference_reranker):
    transport = httpx.ASGITransport(app=client.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=AUTH) as http:
        requests = [{"query": f"{QUERY} {i}", "documents": DOCUMENTS} for i in range(16)]
        responses = await asyncio.gather(*(http.post("/v1/rerank", json=r) for r in requests))
    for request, response in zip(requests, responses, strict=True):
        expected = reference_reranker.score(request["query"], DOCUMENTS)
        got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        assert max(abs(got[i] - expected[i]) for i in range(5)) <= 1e-5  # other packs than alone


def test_the_server_binds_to_loopback_unless_told_otherwise():
    args = build_parser().parse_args(["serve", "--reranker", "r"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_import_without_fastapi_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("qwen3_rag_components.serve")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    with pytest.raises(ImportError, match=r'pip install "qwen3-rag-components\[serve\]"'):
        import qwen3_rag_components.serve  # noqa: F401
