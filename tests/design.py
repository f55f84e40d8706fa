"""The attention pattern the design asks for, computed from a pack's segment lengths alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Segments = Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]]


def expected_pattern(segments: Segments, *, readout_only: bool = False) -> np.ndarray:
    """[T, T] bool from the design: prefix causal; item → its group's whole prefix + itself causally."""
    total = sum(len(prefix) + sum(len(item) for item in items) for prefix, items in segments)
    allowed = np.zeros((total, total), dtype=bool)
    start = 0
    for prefix, items in segments:
        p0, p = start, len(prefix)
        if not readout_only:
            for i in range(p):
                allowed[p0 + i, p0 : p0 + i + 1] = True
        start += p
        for item in items:
            first = len(item) - 1 if readout_only else 0
            for i in range(first, len(item)):
                allowed[start + i, p0 : p0 + p] = True
                allowed[start + i, start : start + i + 1] = True
            start += len(item)
    return allowed
