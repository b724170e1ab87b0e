"""One facet's counts, kept as arrays until a response is rendered.

A constrained search at a million records counts a dozen facets with hundreds of values each;
building a Python tuple per value for every search (and a second list to flatten them for
Solr's JSON) cost as much as the counting itself, so the values stay as codes into the
column's value list and only the renderer turns them into objects, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class FacetCounts:
    """Values with their counts, in the order they are listed; iterates as (value, count)."""

    __slots__ = ("_labels", "_codes", "_counts", "_pairs")

    def __init__(
        self, labels: Sequence[str], counts: np.ndarray, codes: np.ndarray | None = None
    ) -> None:
        # `codes` picks the listed values out of `labels` (a column's whole value list);
        # without it `labels` are the listed values themselves
        self._labels = labels
        self._codes = codes
        self._counts = counts
        self._pairs: list[tuple[str, int]] | None = None

    @classmethod
    def of_pairs(cls, pairs: Sequence[tuple[str, int]]) -> FacetCounts:
        return cls([v for v, _ in pairs], np.fromiter((c for _, c in pairs), dtype=np.int64))

    def values(self) -> list[str]:
        if self._codes is None:
            return list(self._labels)
        return list(map(self._labels.__getitem__, self._codes.tolist()))

    def flat(self) -> list[str | int]:
        """Solr's JSON shape: value, count, value, count, ..."""
        out: list[str | int] = [0] * (2 * len(self._counts))
        out[0::2] = self.values()
        out[1::2] = self._counts.tolist()
        return out

    def pairs(self) -> list[tuple[str, int]]:
        if self._pairs is None:
            self._pairs = list(zip(self.values(), self._counts.tolist(), strict=True))
        return self._pairs

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.pairs())

    def __len__(self) -> int:
        return len(self._counts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FacetCounts):
            return self.pairs() == other.pairs()
        if isinstance(other, list):
            return self.pairs() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FacetCounts({self.pairs()!r})"


EMPTY = FacetCounts([], np.zeros(0, dtype=np.int64))
