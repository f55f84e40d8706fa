"""Embedding output precision: the sentence-transformers ``quantize_embeddings`` rules, without its import.

``int8``/``uint8`` map each dimension's ``[min, max]`` range onto 256 buckets; ``binary``/``ubinary`` keep the sign
bit of each value, packed 8 per byte (``ceil(d / 8)`` bytes a vector). The ranges come from ``ranges``
(``[2, d]``: row 0 the minima, row 1 the maxima, e.g. :func:`quantization_ranges` of a calibration set) or, when
none are given, from the vectors of the call itself, as sentence-transformers does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from .errors import InvalidParameter

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

Ranges = tuple[tuple[float, ...], tuple[float, ...]]  # (minima, maxima), as options keep them
RangesLike = Sequence[Sequence[float]] | np.ndarray  # what callers may pass: [2, d] lists or an array


def check_precision(precision: object) -> str:
    if precision not in PRECISIONS:
        raise InvalidParameter(
            "precision", f"precision={precision!r} is not supported; use one of {', '.join(PRECISIONS)}."
        )
    return str(precision)


def check_ranges(ranges: RangesLike | None) -> Ranges | None:
    """``ranges`` as two equal-length float rows (minima, maxima), or ``None``."""
    if ranges is None:
        return None
    array = np.asarray(ranges, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != 2 or array.shape[1] == 0 or not np.isfinite(array).all():
        raise InvalidParameter(
            "ranges",
            f"ranges must be 2 rows of finite floats (the minima, then the maxima of each dimension), got shape "
            f"{array.shape}; build them with quantization_ranges(calibration_vectors).",
        )
    return tuple(array[0].tolist()), tuple(array[1].tolist())


def check_ranges_cover(ranges: RangesLike, dimensions: int) -> None:
    width = np.shape(ranges)[-1]
    if width != dimensions:
        raise InvalidParameter(
            "ranges",
            f"ranges cover {width} dimensions but the vectors have {dimensions}; compute them from vectors embedded "
            "with the same dimensions.",
        )


def check_fixed_ranges(precision: str, ranges: RangesLike | None, pieces: str) -> None:
    """int8 and uint8 scale each dimension over ``ranges``, or over the call's own vectors where ``ranges`` is None:
    an adapter that embeds in ``pieces`` ("one query at a time", ...) would scale every piece differently, so it
    needs ``ranges``."""
    if precision in ("int8", "uint8") and ranges is None:
        raise InvalidParameter(
            "ranges",
            f"{pieces}, and precision={precision!r} needs the range of each dimension: pass "
            "ranges=quantization_ranges(calibration_vectors).tolist() (calibration_vectors: embedded documents, "
            "for instance), or use a binary precision.",
        )


def quantization_ranges(calibration: np.ndarray) -> np.ndarray:
    """``[2, d]`` float32: the minimum and maximum of each dimension over calibration vectors ``[M, d]``."""
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 2 or calibration.shape[0] < 2:
        raise ValueError(
            f"quantization_ranges needs at least 2 calibration vectors as an [M, d] array, got shape "
            f"{calibration.shape}."
        )
    return np.vstack((calibration.min(axis=0), calibration.max(axis=0)))


def quantize_embeddings(vectors: np.ndarray, precision: str, ranges: RangesLike | None = None) -> np.ndarray:
    """``vectors [N, d]`` float32 in ``precision``: int8/uint8 ``[N, d]``, binary (int8)/ubinary (uint8)
    ``[N, ceil(d / 8)]``, float32 unchanged."""
    precision = check_precision(precision)
    if precision == "float32":
        return vectors
    if precision.endswith("binary"):
        packed = np.packbits(vectors > 0, axis=-1)  # [N, ceil(d / 8)] uint8
        return (packed - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        if len(vectors) == 1:
            raise InvalidParameter(
                "precision",
                f"precision={precision!r} needs the range of each dimension, and one vector has none; pass "
                "ranges=quantization_ranges(calibration_vectors) from a representative set of vectors.",
            )
        if len(vectors) == 0:
            return np.zeros(vectors.shape, np.int8 if precision == "int8" else np.uint8)
        ranges = quantization_ranges(vectors)
    check_ranges_cover(ranges, vectors.shape[1])
    bounds = np.asarray(ranges, dtype=np.float32)  # [2, d]
    starts = bounds[0]
    steps = (bounds[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((vectors - starts) / steps), 0, 255)  # [N, d] in 0..255
    return (buckets - 128).astype(np.int8) if precision == "int8" else buckets.astype(np.uint8)


def ranges_as_lists(ranges: Ranges | None) -> list[list[float]] | None:
    """``ranges`` as two plain lists, the form a saved pipeline or a JSON body holds."""
    return None if ranges is None else [list(ranges[0]), list(ranges[1])]
