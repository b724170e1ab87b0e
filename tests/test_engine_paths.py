"""The engine answers the same whichever way it finds the matches.

A selective constraint is answered from posting lists and the other constraints are checked
slot by slot; a broad one by passes over whole columns; title words come from full-text
matches kept per word and topped up as records arrive. All must give exactly what a plain
evaluation of the live records gives — totals, facet counts and the page — after a bulk load,
after publications appended since the posting lists were built, and after deletions.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from esgf_ha.index import engine
from esgf_ha.index.engine import _filter_key
from esgf_ha.index.params import parse_search
from esgf_ha.index.service import IndexService

# value -> weight; a few values are common enough to take the whole-column path
CHOICES: dict[str, dict[str, int]] = {
    "source_id": {"BIG": 60, **{f"model-{i}": 1 for i in range(40)}},
    "experiment_id": {"historical": 30, "ssp585": 10, **{f"exp-{i}": 1 for i in range(20)}},
    "variable_id": {f"var{i}": 1 + (i % 5) * 3 for i in range(30)},
    "realm": {"atmos": 20, "land": 6, "ocean": 6, "seaIce": 2, "aerosol": 1},  # multi-valued
}
FACETS = list(CHOICES)
FIRST_LOAD = 4000
LATE = {"source_id": "late-model", "realm": "late-realm"}
WORDS = ["alpha", "beta", "gamma", "delta"]  # title words, found by free text only


def make_dataset(rng: random.Random, i: int) -> dict[str, object]:
    record: dict[str, object] = {
        "id": f"ds{i:06d}|node",
        "master_id": f"ds{i:06d}",
        "instance_id": f"ds{i:06d}.v1",
        "title": f"dataset {i} {rng.choice(WORDS)}",
        "type": "Dataset",
        "project": "TEST",
        "version": "1",
        "data_node": "node",
        "index_node": "node",
        "latest": rng.random() < 0.8,
        "replica": False,
    }
    for name, weights in CHOICES.items():
        values = list(weights)
        picked = rng.choices(values, weights=[weights[v] for v in values], k=1)
        if name == "realm" and rng.random() < 0.3:
            picked += rng.choices(values, weights=[weights[v] for v in values], k=2)
            # duplicates kept: the index must count a record once per value
        record[name] = picked if name == "realm" else picked[0]
    if i >= FIRST_LOAD and rng.random() < 0.1:
        # values first seen after the posting lists were built
        record["source_id"] = LATE["source_id"]
        record["realm"] = [*values_of(record, "realm"), LATE["realm"]]
    return record


def values_of(record: dict[str, object], name: str) -> list[str]:
    value = record[name]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def expected(live: list[dict[str, object]], params: list[tuple[str, str]]):
    wanted: dict[str, set[str]] = {}
    unwanted: dict[str, set[str]] = {}
    latest = None
    word = None
    for name, value in params:
        if name == "query":
            word = value
        elif name == "latest":
            latest = value == "true"
        elif name.endswith("!"):
            unwanted.setdefault(name[:-1], set()).add(value)
        elif name in CHOICES:
            wanted.setdefault(name, set()).add(value)
    hits = [
        r
        for r in live
        if (latest is None or r["latest"] == latest)
        and (word is None or word in str(r["title"]).split())
        and all(set(values_of(r, k)) & v for k, v in wanted.items())
        and not any(set(values_of(r, k)) & v for k, v in unwanted.items())
    ]
    counts = {name: Counter(v for r in hits for v in set(values_of(r, name))) for name in FACETS}
    return hits, counts


def random_request(rng: random.Random) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for name in rng.sample(FACETS, rng.randint(1, 3)):
        values = [*CHOICES[name], *([LATE[name]] if name in LATE else [])]
        negate = rng.random() < 0.15
        for value in rng.sample(values, rng.choice([1, 1, 2])):
            params.append((f"{name}!" if negate else name, value))
    if rng.random() < 0.6:
        params.append(("latest", rng.choice(["true", "false"])))
    if rng.random() < 0.3:
        params.append(("query", rng.choice(WORDS)))
    return params


def check(svc: IndexService, live: list[dict[str, object]], rng: random.Random, rounds: int):
    paths = Counter()
    for _ in range(rounds):
        params = random_request(rng)
        offset = rng.choice([0, 0, 3])
        req = parse_search(
            [*params, ("facets", ",".join(FACETS)), ("limit", "7"), ("offset", str(offset))],
            svc.known_fields(),
        )
        result, docs = svc.search(req)
        hits, counts = expected(live, params)
        assert result.total == len(hits), params
        assert [d["id"] for d in docs] == [r["id"] for r in hits[offset : offset + 7]], params
        for name in FACETS:
            assert dict(result.facets[name]) == dict(counts[name]), (params, name)
        cached = svc.engine._cache.get(_filter_key(req), svc.cores["Dataset"].generation)
        paths["rows" if cached is not None and cached.mask is None else "mask"] += 1
    return paths


@pytest.fixture
def svc(tmp_path: Path):
    service = IndexService.open(tmp_path / "state")
    yield service
    service.close()


def test_postings_and_column_passes_agree_through_writes(
    svc: IndexService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the floor below which slot-by-slot checking is always chosen, scaled to this small core
    monkeypatch.setattr(engine, "SMALL_RESULT", 100)
    rng = random.Random(7)
    records = [make_dataset(rng, i) for i in range(6000)]
    svc.bulk_load(records[:FIRST_LOAD])
    live = list(records[:FIRST_LOAD])
    paths = check(svc, live, rng, 150)

    # appended after the posting lists were built: found by scanning the tail
    for start in range(FIRST_LOAD, 6000, 500):
        batch = records[start : start + 500]
        svc.publish_batch({"datasets": [{"dataset": r, "files": []} for r in batch]})
        live.extend(batch)
    paths += check(svc, live, rng, 150)

    gone = {str(r["id"]) for r in rng.sample(live, 700)}
    svc.delete(sorted(gone))
    live = [r for r in live if r["id"] not in gone]
    paths += check(svc, live, rng, 150)

    # both ways of finding matches were exercised
    assert paths["rows"] > 50 and paths["mask"] > 50, paths
