"""A write's facet-index update is prepared before the search lock is taken: preparing
changes nothing a search reads, and applying what was prepared gives the same index as
adding the records directly, new values, multi-valued fields and numbers included."""

from __future__ import annotations

import copy

import numpy as np

from esgf_ha.index.columns import CoreIndex
from esgf_ha.records.samples import cmip5_samples, cmip6_samples


def records() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for sample in [*cmip6_samples(12, seed=5), *cmip5_samples(4, seed=6)]:
        out.append(sample.dataset)
        out.extend(sample.files)
    return out


def state(index: CoreIndex) -> dict[str, object]:
    """What searches read: live slots, every column's codes, dictionary and totals."""
    return {
        "n": index.n,
        "alive": index.alive[: index.n].tolist(),
        "live": index.live_count,
        "strings": {
            name: (
                list(col.values),
                col.codes[: index.n].tolist(),
                col.totals[: len(col.values)].tolist(),
                sorted(
                    zip(col.xrows[: col.nx].tolist(), col.xcodes[: col.nx].tolist(), strict=True)
                ),
            )
            for name, col in sorted(index.strings.items())
        },
        "numbers": {
            name: np.nan_to_num(col.view(index.n), nan=-1.0).tolist()
            for name, col in sorted(index.numbers.items())
        },
    }


def test_prepare_changes_nothing_and_apply_equals_add() -> None:
    recs = records()
    first, second = recs[: len(recs) // 2], recs[len(recs) // 2 :]
    direct, staged = CoreIndex("File"), CoreIndex("File")
    for index in (direct, staged):
        index.add_many(list(range(len(first))), first)
    slots = list(range(len(first), len(recs)))
    before = copy.deepcopy(state(staged))
    pending = staged.prepare_add(slots, second)
    assert state(staged) == before
    staged.apply_add(pending)
    direct.add_many(slots, second)
    assert state(staged) == state(direct)
    assert state(staged) != before


def test_values_new_to_a_column_get_codes_when_applied() -> None:
    index = CoreIndex("Dataset")
    index.add_many([0], [{"id": "a", "source_id": "X", "realm": ["atmos"]}])
    pending = index.prepare_add(
        [1, 2],
        [
            {"id": "b", "source_id": "Y", "realm": ["ocean", "atmos", "ocean"]},
            {"id": "c", "source_id": "X", "new_field": "z", "realm": "land"},
        ],
    )
    # another write lands first and adds one of the same new values
    index.add_many([3], [{"id": "d", "source_id": "Y", "realm": ["seaIce"]}])
    index.apply_add(pending)
    col = index.strings["source_id"]
    assert col.values.count("Y") == 1
    assert dict(zip(col.values, col.totals[: len(col.values)].tolist(), strict=True)) == {
        "X": 2,
        "Y": 2,
    }
    realm = index.strings["realm"]
    totals = dict(zip(realm.values, realm.totals[: len(realm.values)].tolist(), strict=True))
    assert totals == {"atmos": 2, "ocean": 1, "land": 1, "seaIce": 1}
    assert index.strings["new_field"].values == ["z"]
    assert index.live_count == 4
