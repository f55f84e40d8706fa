"""The request bodies the server accepts: the shapes Cohere, Jina, OpenAI and TEI clients already send.

Unknown fields are ignored (clients add their own, e.g. OpenAI's ``user``); known fields are typed strictly, so a
wrong type is a 422 that names the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ..engine.precision import Precision


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DocumentText(_Body):
    text: StrictStr


class RerankRequest(_Body):
    """``POST /v1/rerank`` and ``/v2/rerank``: Cohere (v1 and v2) and Jina rerank."""

    model: StrictStr | None = None  # accepted and ignored: the server has one reranker
    query: StrictStr
    documents: list[StrictStr | DocumentText]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    instruction: StrictStr | None = None  # the Qwen3 <Instruct> text; None: the server's default
    max_tokens_per_doc: StrictInt | None = Field(default=None, ge=1)  # Cohere's: a document's best window's score


class TeiRerankRequest(_Body):
    """``POST /rerank``: Hugging Face text-embeddings-inference."""

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = False  # True: logit_yes - logit_no instead of P(yes)
    return_text: StrictBool = False
    truncate: StrictBool = False  # False: a text longer than max_length is an error, as in TEI


class EmbeddingsRequest(_Body):
    """``POST /v1/embeddings``: OpenAI embeddings."""

    model: StrictStr | None = None
    input: StrictStr | list[StrictStr]
    dimensions: StrictInt | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"  # base64: the little-endian bytes in the precision's dtype
    precision: Precision = "float32"  # sentence-transformers' forms
    ranges: list[list[float]] | None = None  # int8/uint8: each dimension's minima, then maxima
    input_type: Literal["query", "document"] = "document"  # "query": with the query instruction
    instruction: StrictStr | None = None  # the query instruction (implies input_type="query")


class TeiEmbedRequest(_Body):
    """``POST /embed``: Hugging Face text-embeddings-inference."""

    inputs: StrictStr | list[StrictStr]
    normalize: StrictBool = True
    truncate: StrictBool = False
    dimensions: StrictInt | None = Field(default=None, ge=1)
    prompt_name: Literal["query", "document"] | None = None  # TEI's named prompts: "query" adds the instruction
