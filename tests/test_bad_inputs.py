"""Bad input catalogue: every case gets a clear error naming the value and the fix, or a documented result."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine

QUERY = "what is it?"
NOT_A_LIST = [
    (None, "got NoneType"),
    (42, "got int"),
    (b"bytes", "got bytes"),
    ({"text": "a"}, "got dict"),
    ("one string", "wrap it in a list"),
]
BAD_ENTRIES = [([["nested"]], r"\[0\] is list"), (["ok", 3.5], r"\[1\] is float"), (["ok", b"x"], r"\[1\] is bytes")]


@pytest.mark.parametrize(("value", "message"), NOT_A_LIST + BAD_ENTRIES)
def test_engines_reject_what_is_not_a_list_of_strings(rerank_engine, embed_engine, value, message):
    with pytest.raises(TypeError, match=message):
        rerank_engine.score(QUERY, value)
    with pytest.raises(TypeError, match=message):
        embed_engine.embed_documents(value)
    with pytest.raises(TypeError, match=message):
        embed_engine.embed_queries(value)


@pytest.mark.parametrize("budget", [0, -1, math.nan, 2.5, "8192", None])
def test_bad_pack_budgets(rerank_engine, embed_engine, budget):
    with pytest.raises(ValueError, match="max_tokens_per_pack="):
        rerank_engine.with_options(max_tokens_per_pack=budget)
    with pytest.raises(ValueError, match="max_tokens_per_pack="):
        embed_engine.with_options(max_tokens_per_pack=budget)


def test_budget_smaller_than_the_prefix_gives_one_document_per_pack(rerank_engine):
    documents = ["alpha", "beta", "gamma"]
    result = rerank_engine.with_options(max_tokens_per_pack=5).score_with_meta(QUERY, documents)
    assert result.meta.packs == 3
    assert result.scores == pytest.approx(rerank_engine.score(QUERY, documents), abs=1e-5)


def test_ten_thousand_documents_in_one_call_keep_their_order(embed_engine):
    texts = [f"document number {i}" for i in range(10_000)]
    result = embed_engine.encode(texts, dimensions=8)
    assert result.embeddings.shape == (10_000, 8) and result.meta.unique_documents == 10_000
    for index in (0, 1, 4_321, 9_999):
        assert (
            np.abs(result.embeddings[index] - embed_engine.encode([texts[index]], dimensions=8).embeddings[0]).max()
            <= 1e-5
        )


def test_a_million_character_document_is_truncated_by_the_official_rule(rerank_engine, embed_engine):
    huge = "word " * 200_000
    result = rerank_engine.score_with_meta(QUERY, [huge, "short"])
    assert result.meta.truncated_documents == 1 and all(0 < s < 1 for s in result.scores)
    assert embed_engine.encode([huge]).meta.truncated_documents == 1


def test_missing_model_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(OSError, match="no-such-model"):
        Qwen3RerankEngine.from_pretrained(str(missing), device="cpu", local_files_only=True)
    with pytest.raises(OSError, match="no-such-model"):
        Qwen3EmbedEngine.from_pretrained(str(missing), device="cpu", local_files_only=True)


# The same catalogue through the framework adapters: Haystack components and LangChain classes.
ADAPTER_NOT_A_LIST = [
    (None, "NoneType"),
    (42, "int"),
    (b"bytes", "bytes"),
    ({"text": "a"}, "dict"),
    ("one string", "str"),
    ([["nested"]], "list with a list entry"),
]


@pytest.fixture(scope="module")
def haystack_components(reranker_model, embedder_model):
    haystack = pytest.importorskip("qwen3_rag_components.haystack")
    from haystack.utils import ComponentDevice

    cpu = ComponentDevice.from_str("cpu")
    return (
        haystack.Qwen3Ranker(reranker_model, device=cpu),
        haystack.Qwen3DocumentEmbedder(embedder_model, device=cpu),
        haystack.Qwen3TextEmbedder(embedder_model, device=cpu),
    )


@pytest.fixture(scope="module")
def langchain_classes(reranker_model, embedder_model):
    langchain = pytest.importorskip("qwen3_rag_components.langchain")
    return (
        langchain.Qwen3Reranker(model=reranker_model, device="cpu"),
        langchain.Qwen3Embeddings(model=embedder_model, device="cpu"),
    )


@pytest.mark.parametrize(("value", "type_name"), ADAPTER_NOT_A_LIST)
def test_haystack_components_reject_what_is_not_a_list_of_documents(haystack_components, value, type_name):
    ranker, document_embedder, _ = haystack_components
    with pytest.raises(TypeError, match=f"Qwen3Ranker expects a list of Documents as input, got {type_name}"):
        ranker.run(QUERY, value)
    with pytest.raises(TypeError, match=f"Qwen3DocumentEmbedder expects a list of Documents as input, got {type_name}"):
        document_embedder.run(value)


@pytest.mark.parametrize("value", [None, 42, b"bytes", {"text": "a"}, ["a list"]])
def test_haystack_components_reject_a_query_or_text_that_is_not_a_string(haystack_components, value):
    from haystack import Document

    ranker, _, text_embedder = haystack_components
    with pytest.raises(TypeError, match=rf"^query is {type(value).__name__} \(.*\); it must be a str\.$"):
        ranker.run(value, [Document(content="a document")])
    with pytest.raises(TypeError, match=f"Qwen3TextEmbedder expects a string as input, got {type(value).__name__}"):
        text_embedder.run(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "documents must be a list of Documents, got NoneType"),
        (42, "documents must be a list of Documents, got int"),
        (b"bytes", "documents must be a list of Documents, got bytes"),
        ({"text": "a"}, "documents must be a list of Documents, got dict"),
        ("one string", "documents must be a list of Documents, got a single string; wrap it in a list"),
        ([["nested"]], r"documents\[0\] is list; compress_documents takes Documents"),
    ],
)
def test_langchain_reranker_rejects_what_is_not_a_list_of_documents(langchain_classes, value, message):
    reranker, _ = langchain_classes
    with pytest.raises(TypeError, match=message):
        reranker.compress_documents(value, QUERY)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "documents must be a list of Documents or strings, got NoneType"),
        ({"text": "a"}, "documents must be a list of Documents or strings, got dict"),
        ("one string", "documents must be a list of Documents or strings, got a single string; wrap it in a list"),
        ([["nested"]], r"documents\[0\] is list \(\['nested'\]\); every entry must be a str"),
    ],
)
def test_langchain_rerank_rejects_what_is_not_a_list_of_documents_or_strings(langchain_classes, value, message):
    reranker, _ = langchain_classes
    with pytest.raises(TypeError, match=message):
        reranker.rerank(value, QUERY)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "texts must be a list of strings, got NoneType"),
        (42, "texts must be a list of strings, got int"),
        (b"bytes", "texts must be a list of strings, got bytes"),
        ({"text": "a"}, "texts must be a list of strings, got dict"),  # would otherwise embed the dict's keys
        ("one string", "got a single string; wrap it in a list, or use embed_query"),
        ([["nested"]], r"texts\[0\] is list"),
        (["ok", None], r"texts\[1\] is NoneType"),
    ],
)
def test_langchain_embeddings_reject_what_is_not_a_list_of_strings(langchain_classes, value, message):
    _, embeddings = langchain_classes
    with pytest.raises(TypeError, match=message):
        embeddings.embed_documents(value)


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["a list"]])
def test_langchain_classes_reject_a_query_that_is_not_a_string(langchain_classes, value):
    from langchain_core.documents import Document

    reranker, embeddings = langchain_classes
    with pytest.raises(TypeError, match=rf"^query is {type(value).__name__} \(.*\); it must be a str\.$"):
        reranker.compress_documents([Document(page_content="a document")], value)
    with pytest.raises(TypeError, match=f"text must be a str, got {type(value).__name__}"):
        embeddings.embed_query(value)


def test_engine_rejects_requests_that_are_not_a_list(rerank_engine):
    with pytest.raises(TypeError, match=r"requests must be a list of \(query, documents\) pairs, got NoneType"):
        rerank_engine.score_batch_with_meta(None)
    with pytest.raises(TypeError, match=r"requests\[0\] must be a \(query, documents\) pair, got str"):
        rerank_engine.score_batch_with_meta(["query"])
    with pytest.raises(TypeError, match=r"The query of requests\[1\] is int"):
        rerank_engine.score_batch_with_meta([(QUERY, ["a"]), (7, ["b"])])


# Checkpoints, devices and options that cannot work, through every surface: each fails on load with the value named.
SURFACES = ["engine", "haystack", "langchain"]


def load_and_call(surface: str, kind: str, model: str, **options) -> None:
    """Load ``model`` through one surface as a reranker or embedder and make one call."""
    device = options.pop("device", "cpu")
    if surface == "engine":
        if kind == "rerank":
            engine = Qwen3RerankEngine.from_pretrained(model, device=device, local_files_only=True, **options)
            engine.score(QUERY, ["a"])
        else:
            dimensions = options.pop("dimensions", None)
            engine = Qwen3EmbedEngine.from_pretrained(model, device=device, local_files_only=True, **options)
            engine.encode(["a"], dimensions=dimensions)
    elif surface == "haystack":
        haystack = pytest.importorskip("qwen3_rag_components.haystack")
        from haystack import Document
        from haystack.utils import ComponentDevice

        component_class = haystack.Qwen3Ranker if kind == "rerank" else haystack.Qwen3TextEmbedder
        component = component_class(model, device=ComponentDevice.from_str(device), local_files_only=True, **options)
        component.warm_up()
        component.run(QUERY, [Document(content="a")]) if kind == "rerank" else component.run("a")
    else:
        langchain = pytest.importorskip("qwen3_rag_components.langchain")
        if kind == "rerank":
            langchain.Qwen3Reranker(model=model, device=device, local_files_only=True, **options).rerank(["a"], QUERY)
        else:
            langchain.Qwen3Embeddings(model=model, device=device, local_files_only=True, **options).embed_query("a")


@pytest.fixture(scope="module")
def broken_checkpoints(tmp_path_factory, reranker_paths, embedder_paths) -> dict[str, str]:
    root = tmp_path_factory.mktemp("broken")
    (root / "bert").mkdir()
    (root / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    # A Qwen3 reranker whose tokenizer has no "yes" and no "no" token (renamed, and every merge using them dropped).
    no_yes_no = shutil.copytree(reranker_paths["tied"], root / "no_yes_no")
    spec = json.loads((no_yes_no / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    for token in ("yes", "no"):
        vocab[f"{token}_renamed"] = vocab.pop(token)
    spec["model"]["merges"] = [
        merge for merge in spec["model"]["merges"] if not {merge[0], merge[1], merge[0] + merge[1]} & {"yes", "no"}
    ]
    (no_yes_no / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    return {
        "bert": str(root / "bert"),
        "no_yes_no": str(no_yes_no),
        "missing": str(root / "no-such-model"),
        "embedder": str(embedder_paths["base"]),  # a Qwen3Model: no output head for the reranker
        "reranker": str(reranker_paths["tied"]),
    }


RERANKER_LOAD_ERRORS = [
    ("bert", {}, ValueError, r"is a 'bert' checkpoint; this engine runs Qwen3 checkpoints"),
    ("no_yes_no", {}, ValueError, r"The tokenizer has no single token 'yes'"),
    ("missing", {}, FileNotFoundError, r"No model folder at '.*no-such-model'\. Check the path"),
    ("embedder", {}, ValueError, r"has no weights for \['lm_head\.weight'\].*embedding checkpoint"),
    ("reranker", {"max_length": 30}, ValueError, r"max_length=30 leaves no room .* prefix and suffix alone take 48"),
    ("reranker", {"dtype": "int8"}, ValueError, r"dtype='int8' is not supported; use one of"),
    ("reranker", {"device": "cuda:7"}, ValueError, r"device='cuda:7' was requested but CUDA is not available"),
    ("reranker", {"device": "mps"}, ValueError, r"device='mps' is not available here"),
]
EMBEDDER_LOAD_ERRORS = [
    ("bert", {}, ValueError, r"is a 'bert' checkpoint"),
    ("missing", {}, FileNotFoundError, r"No model folder at '.*no-such-model'"),
    ("embedder", {"dimensions": 65}, ValueError, r"dimensions=65 is out of range: use an int from 1 to 64"),
    ("embedder", {"max_length": 1}, ValueError, r"max_length=1 leaves no room for text before <\|endoftext\|>"),
    ("embedder", {"dtype": "float64"}, ValueError, r"dtype='float64' is not supported"),
    ("embedder", {"device": "cuda:7"}, ValueError, r"device='cuda:7' was requested but CUDA is not available"),
]


def skip_if_the_device_exists(options: dict) -> None:
    device = options.get("device", "cpu")
    if (device.startswith("cuda") and torch.cuda.is_available()) or (
        device == "mps" and torch.backends.mps.is_available()
    ):
        pytest.skip(f"{device} exists on this machine")


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("checkpoint", "options", "error", "message"), RERANKER_LOAD_ERRORS)
def test_reranker_load_errors(broken_checkpoints, surface, checkpoint, options, error, message):
    skip_if_the_device_exists(options)
    with pytest.raises(error, match=message):
        load_and_call(surface, "rerank", broken_checkpoints[checkpoint], **options)


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("checkpoint", "options", "error", "message"), EMBEDDER_LOAD_ERRORS)
def test_embedder_load_errors(broken_checkpoints, surface, checkpoint, options, error, message):
    skip_if_the_device_exists(options)
    with pytest.raises(error, match=message):
        load_and_call(surface, "embed", broken_checkpoints[checkpoint], **options)


def test_an_uncached_hub_id_with_local_files_only_says_what_to_do():
    with pytest.raises(OSError) as raised:
        Qwen3RerankEngine.from_pretrained("qwen3-rag-components-tests/not-cached", local_files_only=True)
    assert raised.value.__notes__ == [
        "local_files_only=True: only local folders and the Hugging Face cache were searched for "
        "'qwen3-rag-components-tests/not-cached'. Download it first "
        "(`hf download qwen3-rag-components-tests/not-cached`) or pass its folder."
    ]


def test_an_embedding_tokenizer_without_yes_and_no_still_embeds(broken_checkpoints):
    """Only the reranker reads the "yes"/"no" rows; the embedder does not need those tokens."""
    engine = Qwen3EmbedEngine.from_pretrained(broken_checkpoints["no_yes_no"], device="cpu", local_files_only=True)
    assert engine.encode(["yes or no"]).embeddings.shape == (1, 64)
