"""Qwen3Rerank: a LlamaIndex node postprocessor that scores nodes with Qwen3-Reranker on the packed engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle

from ..adapter_fields import RerankFields
from ..engine.prompts import check_list, check_query
from ..engine.service import Ranking, Reranker


class Qwen3Rerank(RerankFields, BaseNodePostprocessor):
    """Reranks nodes with a Qwen3-Reranker checkpoint; the score is the official P("yes") in [0, 1].

    Returns new ``NodeWithScore``s around the same nodes (ids and metadata untouched), best first (ties keep their
    input order), cut to ``top_n``, as LlamaIndex's own rerankers do; the input ``NodeWithScore``s keep their
    retrieval scores. The model is loaded on first use and shared with every other adapter (LlamaIndex, LangChain or
    Haystack) that asks for the same checkpoint, device and dtype.

    Example:
        .. code-block:: python

            from qwen3_rag_components.llamaindex import Qwen3Rerank

            reranker = Qwen3Rerank(model="Qwen/Qwen3-Reranker-0.6B", top_n=3)
            query_engine = index.as_query_engine(similarity_top_k=10, node_postprocessors=[reranker])
            response = query_engine.query("What is the capital of China?")
            response.source_nodes[0].score  # 0.99...

            reranker.postprocess_nodes(nodes, query_str="What is the capital of China?")  # best 3, best first
    """

    metadata_mode: MetadataMode = MetadataMode.EMBED
    """Which text of a node is scored: ``EMBED`` (the default of LlamaIndex's rerankers and embeddings: the text with
    the metadata not in ``excluded_embed_metadata_keys``), ``LLM``, ``ALL``, or ``NONE`` for the text alone."""

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Rerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        """The best ``top_n`` nodes, best first, scored against ``query_bundle.query_str``."""
        query = _check_call(nodes, query_bundle)
        with self._reranking(nodes, query) as finish:
            return finish(Reranker(self.holder).rank(query, self._texts(nodes), top_k=self.top_n))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        """Like the sync path, awaiting the model's shared scheduler (no thread held while it computes)."""
        query = _check_call(nodes, query_bundle)
        with self._reranking(nodes, query) as finish:
            return finish(await Reranker(self.holder).arank(query, self._texts(nodes), top_k=self.top_n))

    @contextmanager
    def _reranking(self, nodes: list[NodeWithScore], query: str) -> Iterator[Callable[[Ranking], list[NodeWithScore]]]:
        """LlamaIndex's RERANKING event around one rerank call; ``finish(ranking)`` returns the ranked nodes."""
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:

            def finish(ranking: Ranking) -> list[NodeWithScore]:
                ranked = [NodeWithScore(node=nodes[i].node, score=score) for i, score in ranking.ranked()]
                event.on_end(payload={EventPayload.NODES: ranked})
                return ranked

            yield finish

    def _texts(self, nodes: Sequence[NodeWithScore]) -> list[str]:
        return [item.node.get_content(metadata_mode=self.metadata_mode) for item in nodes]

    def _payload(self, nodes: Sequence[NodeWithScore], query: str) -> dict[EventPayload, object]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }


def _check_call(nodes: Sequence[NodeWithScore], query_bundle: QueryBundle | None) -> str:
    """The query string; raise on a missing query or on anything but a list of ``NodeWithScore``."""
    if query_bundle is None:
        raise ValueError(
            "Qwen3Rerank needs the query: call postprocess_nodes(nodes, query_str=...) "
            "or postprocess_nodes(nodes, query_bundle=QueryBundle(...))."
        )
    query = check_query(query_bundle.query_str)  # before the model loads
    check_list(nodes, "nodes", "NodeWithScore")
    for index, item in enumerate(nodes):
        if not isinstance(item, NodeWithScore):
            hint = f": wrap it as NodeWithScore(node=nodes[{index}])" if isinstance(item, BaseNode) else ""
            raise TypeError(f"nodes[{index}] is {type(item).__name__}; Qwen3Rerank takes NodeWithScore objects{hint}.")
    return query
