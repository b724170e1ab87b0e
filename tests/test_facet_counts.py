"""Facet counts: a column's counts over any selection equal a tally of the records' own values
(missing and multi-valued fields included), and the arrays kept for the renderer list the same
values and counts as (value, count) pairs, in the same order, in every shape a client reads."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from esgf_ha.index.columns import CoreIndex
from esgf_ha.index.facet_counts import EMPTY, FacetCounts
from esgf_ha.records.samples import cmip5_samples, cmip6_samples


def datasets() -> list[dict[str, object]]:
    out = [s.dataset for s in [*cmip6_samples(30, seed=11), *cmip5_samples(10, seed=12)]]
    for i, record in enumerate(out):
        if i % 7 == 0:  # some records lack a field others have
            record.pop("realm", None)
            record.pop("experiment_id", None)
    return out


def tally(records: list[dict[str, object]], rows: list[int], name: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in rows:
        value = records[row].get(name)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                counts[str(v)] += 1
    return counts


@pytest.mark.parametrize("seed", range(6))
def test_counts_over_any_selection_equal_a_tally_of_the_records(seed: int) -> None:
    records = datasets()
    index = CoreIndex("Dataset")
    index.add_many(list(range(len(records))), records)
    rng = random.Random(seed)
    rows = sorted(rng.sample(range(len(records)), rng.randint(0, len(records))))
    selected = np.asarray(rows, dtype=np.int64)
    mask = np.zeros(index.n, dtype=bool)
    mask[selected] = True
    checked_multi = False
    for name, col in index.strings.items():
        counts = col.count(selected, mask, index.n)
        got = {col.values[c]: int(n) for c, n in enumerate(counts) if n}
        assert got == dict(tally(records, rows, name)), name
        checked_multi |= bool(col.nx) and bool(rows)
    assert checked_multi or not rows  # the samples do hold multi-valued fields


def test_arrays_render_as_the_pairs_they_stand_for() -> None:
    labels = ["c", "a", "b", "d"]
    order = np.array([1, 2, 0], dtype=np.int64)  # a, b, c: lexical
    counts = np.array([5, 0, 7], dtype=np.int64)
    facet = FacetCounts(labels, counts, order)
    assert facet.pairs() == [("a", 5), ("b", 0), ("c", 7)]
    assert list(facet) == facet.pairs() and len(facet) == 3
    assert facet.flat() == ["a", 5, "b", 0, "c", 7]
    assert all(type(x) is int for x in facet.flat()[1::2])  # JSON numbers, not numpy scalars
    plain = FacetCounts.of_pairs([("1", 2), ("10", 1)])
    assert plain.flat() == ["1", 2, "10", 1] and plain == [("1", 2), ("10", 1)]
    assert FacetCounts.of_pairs([("a", 5), ("b", 0), ("c", 7)]) == facet
    assert EMPTY.flat() == [] and EMPTY.pairs() == [] and len(EMPTY) == 0
    assert dict(FacetCounts(labels, np.array([3]), np.array([3]))) == {"d": 3}
