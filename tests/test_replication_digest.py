"""The digest endpoint during a snapshot bootstrap: the replica swaps its store under the write
lock while digest requests keep coming; each one answers 200 from one whole store, the old or
the new, never from a closed one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.replicas import caught_up, start_master, start_replica, wait_for
from tests.servers import IndexServer, free_port
from tests.test_publish import one_dataset
from tests.test_replication_faults import replication

# summaries and listings of the whole core, interleaved: a request that straddled the swap
# would mix counts from two stores
WHOLE = {"core": "File", "ranges": [["", None], ["", None, True]] * 4}


def hammer(replica: IndexServer, stop: threading.Event, seen: list[httpx.Response]) -> None:
    auth = replica.auth("esgf:replicate")
    with replica.client() as c:
        deadline = time.monotonic() + 120  # bounded whatever the test does
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                seen.append(c.post("/api/v1/digest", json=WHOLE, headers=auth))
            except httpx.TransportError:
                continue


def test_digests_stay_whole_while_a_bootstrap_swaps_the_store(tmp_path: Path) -> None:
    from esgf_ha.index.service import IndexService
    from esgf_ha.records.samples import cmip6_samples

    port = free_port()
    master = start_master(tmp_path / "master", port)
    replica = start_replica(tmp_path / "replica", master)
    stop = threading.Event()
    seen: list[httpx.Response] = []
    worker = threading.Thread(target=hammer, args=(replica, stop, seen), daemon=True)
    try:
        assert master.publish(one_dataset(seed=1)).status_code == 200
        caught_up(replica, master)
        master.stop()
        # a bulk load logs a count, not records: the replica must copy a snapshot
        service = IndexService.open(master.state_dir)
        samples = cmip6_samples(60, seed=5)
        service.bulk_load([s.dataset for s in samples], [f for s in samples for f in s.files])
        service.close()
        worker.start()
        master = start_master(master.state_dir, port)
        wait_for(lambda: replication(replica)["upstream"]["bootstraps"] == 2, 60, "a bootstrap")
        caught_up(replica, master)
        time.sleep(0.2)  # a few requests against the new store too
    finally:
        stop.set()
        worker.join(timeout=60)
        replica.stop()
        master.stop()
    assert not worker.is_alive()
    assert len(seen) > 20, "too few requests overlapped the bootstrap to mean anything"
    bad = [(r.status_code, r.text[:200]) for r in seen if r.status_code != 200]
    assert bad == []
    counts = set()
    for r in seen:
        digests = r.json()["digests"]
        # every count and listing come from the same store: never one old and one new
        sizes = {d["count"] if "count" in d else len(d["ids"]) for d in digests}
        assert len(sizes) == 1, sizes
        counts |= sizes
    assert len(counts) == 2, counts  # the hammering saw the old store and the new one
