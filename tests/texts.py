"""Documents that exercise every tokenizer boundary the packed split could break."""

from __future__ import annotations

import random

BOUNDARY_DOCUMENTS = [
    "The capital of China is Beijing.",
    "",
    " ",
    "  leading spaces",
    "trailing spaces   ",
    "\ttab first",
    "tab\tinside\tand trailing\t",
    "\nnewline first",
    "lines\nand\r\nwindows\r\nbreaks\n\n",
    "!!! punctuation first",
    ":colon first",
    "...",
    "\"double quotes\" and 'single quotes'",
    "«guillemets» and “curly quotes”",
    "1234567890 digits, 3.14159 and -42",
    "2026-11-21T23:59:59Z",
    "don't can't won't it's we're they've I'm you'll he'd",
    "'s at the start",
    "DON'T SHOUT",
    "e\u0301 combining acute (NFD) and caf\u00e9 (NFC)",
    "\u0301 starts with a combining mark",
    "北京是中华人民共和国的首都。",
    "日本語のテキストとカタカナ",
    "한국어 문장입니다",
    "مرحبا بالعالم، هذا نص عربي",
    "שלום עולם",
    "Mixed עברית and English",
    "emoji 😀🎉👍🏽 and flags 🇨🇳🇺🇸",
    "👨‍👩‍👧‍👦 family ZWJ sequence",
    "math ∑∫√∞ ≠ ≤ ≥",
    "code: def f(x):\n    return x ** 2  # comment",
    "<html><body>markup</body></html>",
    "URL https://example.com/path?q=1&r=2#frag",
    "email someone@example.org",
    "a",
    "yes",
    "no",
    "Yes. No. Maybe.",
    "   ",
    "\u00a0non-breaking\u00a0spaces\u00a0",
    "zero\u200bwidth\u200bspace",
]


def random_documents(count: int, seed: int) -> list[str]:
    """Documents of mixed lengths (1 to ~300 words) built from an English vocabulary."""
    rng = random.Random(seed)
    words = (
        "the of and to in is was for on that with as by at from this be are an or it which not has had have were "
        "capital city river mountain population history government language economy science research model data "
        "retrieval passage query answer document search engine ranking relevance neural network training"
    ).split()
    docs = []
    for _ in range(count):
        length = min(300, max(1, int(rng.lognormvariate(3.0, 1.0))))
        text = " ".join(rng.choice(words) for _ in range(length))
        docs.append(text.capitalize() + rng.choice([".", "!", "?", "", "\n"]))
    return docs
