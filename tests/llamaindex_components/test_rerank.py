"""Qwen3Rerank: scores equal the engine's, NodeWithScore order, top_n, nodes untouched, async, sharing, errors."""

from __future__ import annotations

import sys

import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from pydantic import ValidationError

from qwen3_rag_components import Qwen3RerankEngine, RerankOptions, get_engine
from qwen3_rag_components.llamaindex import Qwen3Rerank

QUERY = "what is dense retrieval?"
TEXTS = [
    "Dense retrieval encodes queries and passages into vectors and matches them by similarity.",
    "The recipe calls for two cups of flour and one egg.",
    "BM25 is a sparse lexical ranking function.",
    "Paris is the capital of France.",
    "A bi-encoder embeds the query and each passage separately.",
    "retrieval",
]


def scored_nodes() -> list[NodeWithScore]:
    """Retrieval scores rising with the index, so that any reranked order differs from the input order."""
    metadata = [{"source": f"s{i}", "tags": ["a", {"i": i}]} for i in range(len(TEXTS))]
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"doc-{i}", metadata=metadata[i]), score=0.1 * i)
        for i, t in enumerate(TEXTS)
    ]


def texts(items: list[NodeWithScore], mode: MetadataMode = MetadataMode.EMBED) -> list[str]:
    return [item.node.get_content(metadata_mode=mode) for item in items]


@pytest.fixture
def make_reranker(reranker_model: str):
    def make(**fields) -> Qwen3Rerank:
        return Qwen3Rerank(model=reranker_model, device="cpu", local_files_only=True, **fields)

    return make


@pytest.fixture(scope="module")
def expected(reference_reranker: Qwen3RerankEngine) -> list[float]:
    return reference_reranker.score(QUERY, texts(scored_nodes()))


def pairs(items: list[NodeWithScore]) -> list[tuple[str, float | None]]:
    return [(item.node.node_id, item.score) for item in items]


def best_first(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def test_nodes_come_back_best_first_with_the_engine_scores(make_reranker, expected):
    out = make_reranker(top_n=None).postprocess_nodes(scored_nodes(), query_str=QUERY)
    assert all(isinstance(item, NodeWithScore) for item in out)
    assert [item.node.node_id for item in out] == [f"doc-{i}" for i in best_first(expected)]
    assert [item.score for item in out] == [expected[i] for i in best_first(expected)]  # the same call: same bits
    assert [item.score for item in out] == sorted(expected, reverse=True)
    assert max(expected) - min(expected) > 0.05  # the tiny model tells the nodes apart


def test_top_n_defaults_to_three(make_reranker, expected):
    best = [f"doc-{i}" for i in best_first(expected)]
    out = make_reranker().postprocess_nodes(scored_nodes(), query_str=QUERY)
    assert [item.node.node_id for item in out] == best[:3]
    assert len(make_reranker(top_n=1).postprocess_nodes(scored_nodes(), query_str=QUERY)) == 1
    assert len(make_reranker(top_n=100).postprocess_nodes(scored_nodes(), query_str=QUERY)) == len(TEXTS)


def test_query_bundle_and_query_str_agree(make_reranker):
    reranker = make_reranker(top_n=None)
    by_str = reranker.postprocess_nodes(scored_nodes(), query_str=QUERY)
    by_bundle = reranker.postprocess_nodes(scored_nodes(), query_bundle=QueryBundle(QUERY))
    assert pairs(by_bundle) == pairs(by_str)


def test_same_nodes_in_new_node_with_scores_inputs_keep_their_scores(make_reranker):
    inputs = scored_nodes()
    out = make_reranker(top_n=None).postprocess_nodes(inputs, query_str=QUERY)
    by_id = {item.node.node_id: item for item in inputs}
    for item in out:
        original = by_id[item.node.node_id]
        assert item is not original and item.node is original.node  # ids, metadata, relationships untouched
    assert [item.score for item in inputs] == [0.1 * i for i in range(len(TEXTS))]  # retrieval scores kept
    assert [item.node.metadata for item in inputs] == [item.node.metadata for item in scored_nodes()]


def test_metadata_mode_picks_the_scored_text(make_reranker, reference_reranker):
    inputs = scored_nodes()
    assert texts(inputs)[0].startswith("source: s0\n")  # EMBED, the default: metadata included
    out = make_reranker(top_n=None, metadata_mode=MetadataMode.NONE).postprocess_nodes(inputs, query_str=QUERY)
    plain = reference_reranker.score(QUERY, TEXTS)
    assert {item.node.node_id: item.score for item in out} == {f"doc-{i}": s for i, s in enumerate(plain)}


def test_custom_instruction_reaches_the_engine(make_reranker, reference_reranker, expected):
    instruction = "Find passages about cooking"
    out = make_reranker(top_n=None, instruction=instruction).postprocess_nodes(scored_nodes(), query_str=QUERY)
    custom = reference_reranker.score(QUERY, texts(scored_nodes()), instruction=instruction)
    assert {item.node.node_id: item.score for item in out} == {f"doc-{i}": s for i, s in enumerate(custom)}
    assert max(abs(a - b) for a, b in zip(custom, expected, strict=True)) > 1e-4


def test_ties_keep_input_order(make_reranker):
    same = [NodeWithScore(node=TextNode(text="same", id_=name), score=s) for name, s in [("x", 0.1), ("y", 0.9)]]
    out = make_reranker(top_n=None).postprocess_nodes(same, query_str=QUERY)
    assert [item.node.node_id for item in out] == ["x", "y"]


def test_empty_input_returns_nothing_without_loading_the_model():
    reranker = Qwen3Rerank(model="/does/not/exist", local_files_only=True)
    assert reranker.postprocess_nodes([], query_str=QUERY) == []
    assert not reranker.holder.loaded
    assert reranker.last_meta.documents == 0 and reranker.last_meta.packs == 0  # recorded as in every adapter


@pytest.mark.asyncio
async def test_async_equals_sync(make_reranker):
    reranker = make_reranker(top_n=4)
    sync = reranker.postprocess_nodes(scored_nodes(), query_str=QUERY)
    out = await reranker.apostprocess_nodes(scored_nodes(), query_str=QUERY)
    assert pairs(out) == pairs(sync)
    assert await reranker.apostprocess_nodes([], query_str=QUERY) == []


def test_reranking_events_reach_the_callback_manager(make_reranker):
    handler = LlamaDebugHandler()
    reranker = make_reranker(callback_manager=CallbackManager([handler]))
    out = reranker.postprocess_nodes(scored_nodes(), query_str=QUERY)
    start, end = handler.get_event_pairs(CBEventType.RERANKING)[0]
    assert start.payload["query_str"] == QUERY and start.payload["top_k"] == 3
    assert end.payload["nodes"] == out


def test_instances_share_one_loaded_model(make_reranker, reranker_model):
    first, second = make_reranker(), make_reranker(top_n=1, instruction="Find code", max_docs_per_pack=2)
    assert first.holder.engine.model is second.holder.engine.model
    shared = get_engine(Qwen3RerankEngine, reranker_model, device="cpu", local_files_only=True)
    assert first.holder.engine.model is shared.model  # the cache the Haystack and LangChain adapters load from
    assert second.holder.engine.options == RerankOptions(instruction="Find code", max_docs_per_pack=2)


def test_shares_the_model_with_the_langchain_reranker(make_reranker, reranker_model):
    langchain = pytest.importorskip("qwen3_rag_components.langchain")
    other = langchain.Qwen3Reranker(model=reranker_model, device="cpu", local_files_only=True)
    assert make_reranker().holder.engine.model is other.holder.engine.model


def test_last_meta_and_changed_fields(make_reranker):
    reranker = make_reranker(top_n=None)
    reranker.postprocess_nodes(scored_nodes(), query_str=QUERY)
    meta = reranker.last_meta
    assert (meta.documents, meta.unique_documents, meta.packs, meta.device) == (len(TEXTS), len(TEXTS), 1, "cpu")
    small = reranker.model_copy(update={"max_docs_per_pack": 1})
    small.postprocess_nodes(scored_nodes(), query_str=QUERY)
    assert small.last_meta.packs == len(TEXTS) and reranker.last_meta is meta


def test_to_dict_round_trip_keeps_fields_and_drops_the_token(reranker_model):
    reranker = Qwen3Rerank(model=reranker_model, top_n=2, instruction="Find code", token="hf_secret")
    data = reranker.to_dict()
    assert data["class_name"] == "Qwen3Rerank" and "token" not in data and "hf_secret" not in reranker.to_json()
    again = Qwen3Rerank.from_dict(data)
    assert (again.model, again.top_n, again.instruction, again.token) == (reranker_model, 2, "Find code", None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"top_k": 3}, "Extra inputs are not permitted"),
        ({"top_n": 0}, "top_n=0 is invalid: use an int >= 1, or None"),
        ({"top_n": -2}, "top_n=-2 is invalid"),
        ({"metadata_mode": "text"}, "metadata_mode"),
        ({"max_length": 0}, "max_length=0 is invalid"),
        ({"max_tokens_per_pack": -1}, "max_tokens_per_pack=-1 is invalid"),
        ({"max_docs_per_pack": 0}, "max_docs_per_pack=0 is invalid"),
        ({"dtype": "int8"}, "dtype='int8' is not supported"),
    ],
)
def test_invalid_fields_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        Qwen3Rerank(**fields)


def test_bad_calls_say_what_to_do(make_reranker):
    reranker = make_reranker()
    with pytest.raises(ValueError, match=r"needs the query: call postprocess_nodes\(nodes, query_str=\.\.\.\)"):
        reranker.postprocess_nodes(scored_nodes())
    with pytest.raises(TypeError, match="single string"):
        reranker.postprocess_nodes("one document", query_str=QUERY)
    with pytest.raises(TypeError, match=r"nodes\[1\] is TextNode; .* wrap it as NodeWithScore\(node=nodes\[1\]\)"):
        reranker.postprocess_nodes([scored_nodes()[0], TextNode(text="b")], query_str=QUERY)
    with pytest.raises(TypeError, match=r"nodes\[0\] is str"):
        reranker.postprocess_nodes(["a"], query_str=QUERY)
    for value in [None, 42, ["a list"]]:  # the engine's message, as through every other adapter
        with pytest.raises(TypeError, match=rf"^query is {type(value).__name__} \(.*\); it must be a str\.$"):
            reranker.postprocess_nodes(scored_nodes(), query_bundle=QueryBundle(value))
    assert not reranker.holder.loaded  # every check runs before the model loads


def test_defaults_and_secret_token():
    reranker = Qwen3Rerank(token="hf_secret")
    assert reranker.model == "Qwen/Qwen3-Reranker-0.6B" and reranker.top_n == 3 and reranker.max_length == 8192
    assert reranker.metadata_mode is MetadataMode.EMBED and reranker.class_name() == "Qwen3Rerank"
    assert "hf_secret" not in repr(reranker) and reranker.token.get_secret_value() == "hf_secret"


def test_import_without_llama_index_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m.startswith(("llama_index", "qwen3_rag_components.llamaindex"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "llama_index.core", None)  # makes `import llama_index.core` fail
    with pytest.raises(ImportError, match=r'pip install "qwen3-rag-components\[llamaindex\]"'):
        import qwen3_rag_components.llamaindex  # noqa: F401
