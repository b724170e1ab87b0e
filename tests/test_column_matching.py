"""A column's matches for any set of wanted values (one, a few, many; values some records
lack; multi-valued fields) are the records holding one of them, whichever way they are found:
a whole-column mask, a check of given slots, or the posting lists with a tail of newer slots."""

from __future__ import annotations

import random

import numpy as np
import pytest

from esgf_ha.index.columns import FEW_CODES, CoreIndex
from esgf_ha.records.samples import cmip5_samples, cmip6_samples


def datasets() -> list[dict[str, object]]:
    out = [s.dataset for s in [*cmip6_samples(40, seed=21), *cmip5_samples(10, seed=22)]]
    for i, record in enumerate(out):
        if i % 5 == 0:
            record.pop("variable_id", None)
            record.pop("realm", None)
    return out


def holds(record: dict[str, object], name: str, wanted: set[str]) -> bool:
    value = record.get(name)
    return any(str(v) in wanted for v in (value if isinstance(value, list) else [value]))


@pytest.mark.parametrize("seed", range(8))
def test_every_way_of_matching_finds_the_records_holding_a_wanted_value(seed: int) -> None:
    records = datasets()
    index = CoreIndex("Dataset")
    half = len(records) // 2
    index.add_many(list(range(half)), records[:half])
    rng = random.Random(seed)
    for col in index.strings.values():
        col.rows_of([0], half)  # posting lists built now; later records land in their tail
    index.add_many(list(range(half, len(records))), records[half:])
    n = index.n
    sizes_seen: set[bool] = set()
    for name, col in index.strings.items():
        for k in (1, 2, FEW_CODES, FEW_CODES + 1, len(col.values)):
            wanted = rng.sample(col.values, min(k, len(col.values)))
            codes = [col.lookup[v] for v in wanted]
            truth = [i for i, r in enumerate(records) if holds(r, name, set(wanted))]
            assert np.flatnonzero(col.match_codes(codes, n)).tolist() == truth, name
            assert col.rows_of(codes, n).tolist() == truth, name
            some = np.asarray(sorted(rng.sample(range(n), n // 2)), dtype=np.int64)
            expect = [i in set(truth) for i in some.tolist()]
            assert col.match_rows(codes, some).tolist() == expect, name
            sizes_seen.add(len(codes) <= FEW_CODES)
    assert sizes_seen == {True, False}  # both ways of building the mask were exercised
