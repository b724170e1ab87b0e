"""The facet snapshot: used when it matches the store exactly, ignored when it is stale."""

from __future__ import annotations

from pathlib import Path

from esgf_ha.index.params import parse_search
from esgf_ha.index.service import IndexService
from esgf_ha.records.samples import as_batch, cmip5_samples, cmip6_samples


def answer(svc: IndexService, **params: str) -> tuple[int, dict]:
    req = parse_search(list(params.items()), svc.known_fields())
    result, docs = svc.search(req)
    return result.total, result.facets


def test_snapshot_round_trip_and_staleness(tmp_path: Path) -> None:
    svc = IndexService.open(tmp_path)
    svc.publish_batch(as_batch(cmip6_samples(20) + cmip5_samples(4)))
    svc.retract([str(cmip6_samples(20)[3].dataset["id"])])
    query = {"facets": "source_id,realm,source_type,version,latest", "latest": "true"}
    before = answer(svc, **query)
    files_before = answer(svc, type="File", facets="variable_id")
    svc.close()  # saves the snapshot

    reopened = IndexService.open(tmp_path)
    assert reopened.from_snapshot
    assert answer(reopened, **query) == before
    assert answer(reopened, type="File", facets="variable_id") == files_before
    # a write after the snapshot, then a crash (no close): the snapshot is stale
    reopened.publish_batch(as_batch(cmip6_samples(3, seed=99)))
    after = answer(reopened, **query)
    reopened.store.close()

    rebuilt = IndexService.open(tmp_path)
    assert not rebuilt.from_snapshot
    assert answer(rebuilt, **query) == after != before
    rebuilt.close()
