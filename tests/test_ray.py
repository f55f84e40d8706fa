"""Ray Data callables on a local 2-CPU Ray: the engine's vectors and scores for every row, in order, even after an
actor dies mid-run; argument errors raised in the driver before any actor starts."""

from __future__ import annotations

import logging
import os
import random
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("ray.data", reason="the Ray callables need the 'ray' extra")
import ray.data
from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

from qwen3_rag_components.engine.precision import quantization_ranges
from qwen3_rag_components.ray import (
    Qwen3RayEmbedder,
    Qwen3RayReranker,
    embed_dataset,
    rerank_dataset,
)

from .texts import BOUNDARY_DOCUMENTS

pytestmark = [
    pytest.mark.ray,
    # Ray Data copies its DataContext attribute by attribute, setting its own deprecated aliases on the way.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

# Ray workers may not be able to import this test module: ship its classes (DiesOnce) by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

# An actor packs a batch's rows together, the reference packs all rows in one call (or scores each row alone): other
# packs, so fp32 sums run in another order (measured: scores up to 1.2e-6, unnormalised vectors with values up to ~2.5
# up to 1.5e-6). Ray's block bundling decides the batches, so every comparison here is between layouts and holds the
# documented pack-layout bound (docs/fidelity.md, Reproducibility).
TOLERANCE = 1e-5
BATCH = 32  # rows per engine call: 300 texts make 10 batches for the 2 actors


def short_texts(count: int, seed: int) -> list[str]:
    """Tokenizer edge cases, then 1-12 word texts; every tenth repeats an earlier one."""
    rng = random.Random(seed)
    words = "the capital of China is Beijing vaccines train immune system river model query answer search".split()
    texts = list(BOUNDARY_DOCUMENTS)
    while len(texts) < count:
        if len(texts) % 10 == 0:
            texts.append(rng.choice(texts))
        else:
            texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))))
    return texts


TEXTS = short_texts(300, seed=0)
QUERIES = ["What is the capital of China?", "how do vaccines work", "river", "", "北京?"]
RERANK_ROWS = [
    {
        "qid": row,
        "query": QUERIES[row % len(QUERIES)],
        "passages": random.Random(row).sample(TEXTS, k=row % 7),  # 0-6 candidates; some rows have none
        "passage": TEXTS[(row * 7) % len(TEXTS)],
    }
    for row in range(120)
]


class DiesOnce(Qwen3RayEmbedder):
    """Kills its own process on its first call unless ``marker`` exists: the first actor to create it dies, once."""

    def __init__(self, *args, marker: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker = marker

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().__call__(batch)
        os._exit(1)  # the process is gone mid-task, as on an OOM kill or a lost node


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.execution_options.preserve_order
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # rows come back in input order
    yield
    context.enable_progress_bars, context.execution_options.preserve_order = saved
    ray.shutdown()


def text_dataset() -> ray.data.Dataset:
    return ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(TEXTS)])


@pytest.fixture(scope="module")
def embedded(local_ray, embedder_model: str) -> ray.data.Dataset:
    """Documents on 2 actors, then the same texts as queries (MRL-cut, not normalised) on 1 actor, in one run."""
    placement = {"model": embedder_model, "local_files_only": True, "batch_size": BATCH, "num_cpus": 0.5}
    ds = embed_dataset(text_dataset(), column="text", concurrency=2, **placement)
    ds = embed_dataset(
        ds,
        column="text",
        output_column="query_embedding",
        kind="queries",
        instruction="Find the passage",
        dimensions=24,
        normalize=False,
        concurrency=1,
        **placement,
    )
    return ds.materialize()


@pytest.fixture(scope="module")
def reranked(local_ray, reranker_model: str) -> list[dict]:
    """Candidate lists on 2 actors, then one-passage pair rows on 1 actor, in one run."""
    placement = {"model": reranker_model, "local_files_only": True, "batch_size": 12, "num_cpus": 0.5}
    ds = ray.data.from_items(RERANK_ROWS)
    ds = rerank_dataset(ds, query_column="query", documents_column="passages", concurrency=2, **placement)
    ds = rerank_dataset(ds, query_column="query", documents_column="passage", concurrency=1, **placement)
    return ds.take_all()


def test_import_without_ray_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "qwen3_rag_components.ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r'pip install "qwen3-rag-components\[ray\]"'):
        import qwen3_rag_components.ray  # noqa: F401


def test_document_vectors_are_the_engines_for_every_row_in_order(embedded, reference_embedder):
    rows = embedded.take_all()
    assert [row["id"] for row in rows] == list(range(len(TEXTS)))  # none lost, none twice, in order
    assert [row["text"] for row in rows] == TEXTS  # input columns travel with the rows
    vectors = np.stack([row["embedding"] for row in rows])
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 64)
    assert np.abs(vectors - reference_embedder.encode(TEXTS).embeddings).max() <= TOLERANCE


def test_query_vectors_keep_dimensions_and_skip_normalising(embedded, reference_embedder):
    vectors = np.stack([row["query_embedding"] for row in embedded.take_all()])
    expected = reference_embedder.encode(
        TEXTS, is_query=True, instruction="Find the passage", dimensions=24, normalize=False
    ).embeddings
    assert vectors.shape == (len(TEXTS), 24)
    assert np.abs(vectors - expected).max() <= TOLERANCE
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_embedding_column_is_a_fixed_shape_float32_tensor(embedded):
    schema = embedded.schema()
    assert schema.names == ["id", "text", "embedding", "query_embedding"]
    column_type = schema.types[2]
    assert (column_type.shape, column_type.value_type) == ((64,), pa.float32())
    batch = embedded.take_batch(5, batch_format="numpy")
    assert batch["embedding"].shape == (5, 64) and batch["embedding"].dtype == np.float32


def test_candidate_lists_get_the_engines_scores_in_their_order(reranked, reference_reranker):
    assert [row["qid"] for row in reranked] == list(range(len(RERANK_ROWS)))
    for row, source in zip(reranked, RERANK_ROWS, strict=True):
        assert list(row["passages"]) == source["passages"]
        expected = reference_reranker.score(source["query"], source["passages"])
        assert len(row["scores"]) == len(expected)
        assert np.abs(np.array(row["scores"]) - expected).max(initial=0.0) <= TOLERANCE


def test_pair_rows_get_one_score_each(reranked, reference_reranker):
    scores = [row["score"] for row in reranked]
    assert all(isinstance(score, float) for score in scores)
    expected = [reference_reranker.score(row["query"], [row["passage"]])[0] for row in RERANK_ROWS]
    assert np.abs(np.array(scores) - expected).max() <= TOLERANCE


def test_a_batch_is_one_engine_call_with_one_request_per_row(reranker_model, monkeypatch):
    reranker = Qwen3RayReranker(
        reranker_model, query_column="q", documents_column="d", local_files_only=True, meta_column="meta"
    )
    calls = []
    engine = reranker.holder.engine
    score_batch = engine.score_batch_with_meta
    monkeypatch.setattr(
        engine, "score_batch_with_meta", lambda requests, **kw: calls.append(requests) or score_batch(requests, **kw)
    )
    batch = pa.table(
        {"q": ["a", "b", "a", "b", "a"], "d": [["x", "y"], ["z"], [], ["x"], ["w"]], "id": [1, 2, 3, 4, 5]}
    )
    out = reranker(batch)
    assert calls == [[("a", ["x", "y"]), ("b", ["z"]), ("a", []), ("b", ["x"]), ("a", ["w"])]]
    assert out.column_names == ["q", "d", "id", "scores", "meta"]
    same_call = engine.score_batch_with_meta(calls[0]).scores
    assert out.column("scores").to_pylist() == same_call  # the same call: the same floats
    metas = out.column("meta").to_pylist()
    assert metas == [reranker.holder.last_meta.to_dict()] * 5  # the batch's meta on every row
    assert (metas[0]["documents"], metas[0]["unique_documents"], metas[0]["packs"]) == (5, 5, 1)


def test_an_actor_killed_mid_run_is_restarted_and_its_batches_retried(
    local_ray, embedder_model, reference_embedder, tmp_path: Path
):
    marker = tmp_path / "an-actor-died"
    ds = text_dataset().map_batches(
        DiesOnce,
        fn_constructor_kwargs={
            "model": embedder_model,
            "column": "text",
            "local_files_only": True,
            "marker": str(marker),
        },
        batch_format="pyarrow",
        batch_size=BATCH,
        compute=ray.data.ActorPoolStrategy(size=1),  # the only actor dies: finishing needs its restart
        num_cpus=0.5,
    )
    rows = ds.take_all()
    assert marker.exists()
    assert [row["id"] for row in rows] == list(range(len(TEXTS)))
    vectors = np.stack([row["embedding"] for row in rows])
    assert np.abs(vectors - reference_embedder.encode(TEXTS).embeddings).max() <= TOLERANCE


# --------------------------------------------------------------------------------------------- errors


def test_a_missing_column_is_named_with_the_columns_there(local_ray, embedder_model):
    with pytest.raises(ValueError) as error:
        embed_dataset(text_dataset(), column="body", model=embedder_model)
    assert str(error.value) == "column='body' is not a column of the dataset; its columns are ['id', 'text']."
    with pytest.raises(ValueError, match=re.escape("documents_column='docs' is not a column of the dataset")):
        rerank_dataset(ray.data.from_items(RERANK_ROWS[:2]), query_column="query", documents_column="docs")


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precision_gives_sentence_transformers_forms_of_the_engines_vectors(
    embedder_model, reference_embedder, precision
):
    calibration = reference_embedder.encode(TEXTS[100:200]).embeddings
    ranges = quantization_ranges(calibration).tolist() if precision in ("int8", "uint8") else None
    embedder = Qwen3RayEmbedder(
        embedder_model, column="text", precision=precision, ranges=ranges, local_files_only=True
    )
    batch = pa.table({"text": TEXTS[:BATCH]})
    (vectors,) = [chunk.to_numpy() for chunk in embedder(batch).column("embedding").chunks]  # one batch: one chunk
    vectors_fp32 = reference_embedder.encode(TEXTS[:BATCH]).embeddings
    expected = st_quantize(vectors_fp32, precision, ranges=None if ranges is None else np.array(ranges))
    assert vectors.dtype == expected.dtype and vectors.shape == expected.shape
    np.testing.assert_array_equal(vectors, expected)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"kind": "passages"},
            ValueError,
            "kind='passages' is not supported; use 'documents' (embedded as they are) or 'queries' (with the query "
            "instruction).",
        ),
        (
            {"dimensions": 65},
            ValueError,
            "dimensions=65 is out of range: use an int from 1 to 64 (this model's hidden size), or None for the full "
            "vector.",
        ),
        ({"dimensions": 0}, ValueError, "dimensions=0 is invalid; it must be a positive int or None."),
        (
            {"instruction": "Find"},
            ValueError,
            "instruction applies to queries only; documents are embedded without one. Use kind='queries' to embed "
            "queries with it.",
        ),
        (
            {"output_column": "text"},
            ValueError,
            "output_column='text' is also the input column; give the output column another name.",
        ),
        (
            {"output_column": "id"},
            ValueError,
            "output_column='id' is already a column of the dataset; pass another output_column, or drop it first "
            "with ds.drop_columns(['id']).",
        ),
        ({"dtype": "int8"}, ValueError, "dtype='int8' is not supported; use one of"),
        ({"precision": "int4"}, ValueError, "precision='int4' is not supported; use one of float32, int8, uint8,"),
        (
            {"precision": "uint8"},
            ValueError,
            "Qwen3RayEmbedder quantizes each batch on its own, and precision='uint8' needs the range of each "
            "dimension: pass ranges=quantization_ranges(calibration_vectors).tolist()",
        ),
        (
            {"precision": "int8", "ranges": [[-1.0] * 3, [1.0] * 3]},
            ValueError,
            "ranges cover 3 dimensions but the vectors have 64;",
        ),
        ({"device": "gpu0"}, ValueError, "device='gpu0' is not a torch device; use 'cpu', 'cuda' or 'cuda:N'."),
        ({"max_tokens_per_pack": 0}, ValueError, "max_tokens_per_pack=0 is invalid; it must be a positive int."),
        ({"concurrency": 0}, ValueError, "concurrency=0 is invalid; use a positive int, (min, max), or None."),
        ({"concurrency": (4, 2)}, ValueError, "concurrency=(4, 2) has min > max; use (min, max) with min <= max."),
        ({"batch_size": 0}, ValueError, "batch_size=0 is invalid; it must be a positive int."),
        ({"dimension": 32}, TypeError, "Qwen3RayEmbedder: got an unexpected keyword argument 'dimension'; its "),
    ],
)
def test_bad_embed_arguments_fail_in_the_driver(local_ray, embedder_model, options, error, message):
    with pytest.raises(error) as raised:
        embed_dataset(text_dataset(), column="text", model=embedder_model, **options)
    assert str(raised.value).startswith(message)


def test_bad_rerank_columns_fail_in_the_driver(local_ray, reranker_model):
    ds = ray.data.from_items(RERANK_ROWS[:3])
    with pytest.raises(TypeError) as error:
        rerank_dataset(ds, query_column="query", documents_column="qid", model=reranker_model)
    assert str(error.value) == (
        "documents_column='qid' holds int64; it must hold strings (one document per row) or lists of strings "
        "(candidate documents per row)."
    )
    with pytest.raises(TypeError, match=re.escape("query_column='passages' holds list<item: string>; it must hold")):
        rerank_dataset(ds, query_column="passages", documents_column="passage", model=reranker_model)
    scored_before = ray.data.from_items([{"query": "q", "passage": "p", "score": 1.0}])
    with pytest.raises(ValueError, match=re.escape("output_column='score' is already a column of the dataset")):
        rerank_dataset(scored_before, query_column="query", documents_column="passage", model=reranker_model)


def test_bad_batches_are_named_by_the_callable(embedder_model):
    embedder = Qwen3RayEmbedder(embedder_model, column="text", local_files_only=True)
    with pytest.raises(TypeError, match=re.escape("takes pyarrow batches, got dict: pass batch_format='pyarrow'")):
        embedder({"text": np.array(["a"])})
    with pytest.raises(ValueError) as error:
        embedder(pa.table({"text": ["a", None, None]}))
    assert str(error.value) == (
        "column='text' has 2 null value(s) in this batch; drop or fill them first, "
        "e.g. ds.filter(expr=ray.data.expressions.col('text').is_not_null())."
    )
    empty = embedder(pa.table({"text": pa.array([], pa.string())}))
    assert empty.num_rows == 0 and empty.column_names == ["text", "embedding"]
