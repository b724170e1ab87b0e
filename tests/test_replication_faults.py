"""Index replication under faults, with real processes killed by SIGKILL.

- a replica killed while applying, then restarted, catches up to identical content;
- a master killed during a publication: no replica ever shows part of the batch; the
  publication re-run after the restart reaches every replica;
- the upstream unreachable for a while: the replica keeps serving, says since when it cannot
  reach it, fails readiness past its lag threshold, and then loses and doubles nothing;
- a master restored from an older backup: a replica ahead of it, or holding entries that differ
  from the restored master's, is detected, bootstrapped again and reports it.
"""

from __future__ import annotations

import copy
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import orjson

from tests.replicas import (
    caught_up,
    seq_of,
    start_master,
    start_replica,
    verify,
    wait_for,
)
from tests.servers import IndexServer, free_port
from tests.test_publish import one_dataset


def big_batch(seed: int, files: int, version: str = "20240101") -> dict:
    """One dataset of `files` files (copies of a sample file under new ids)."""
    batch = one_dataset(seed=seed, version=version)
    entry = batch["datasets"][0]
    template = entry["files"][0]
    entry["files"] = []
    for i in range(files):
        record = copy.deepcopy(template)
        name = f"part{i:06d}.nc"
        record["id"] = record["id"].replace(record["title"], name)
        record["title"] = name
        record["tracking_id"] = f"hdl:21.14100/{seed:04d}-{i:08d}"
        record["checksum"] = [f"{seed:08x}{i:056x}"]
        entry["files"].append(record)
    entry["dataset"]["number_of_files"] = files
    return batch


def dataset_id(batch: dict) -> str:
    return str(batch["datasets"][0]["dataset"]["id"])


def file_count(server: IndexServer, ds_id: str) -> int:
    body = server.search(type="File", dataset_id=ds_id, limit=0)
    return int(body["response"]["numFound"])


def replication(server: IndexServer) -> dict:
    with server.client() as c:
        r = c.get("/api/v1/replication", headers=server.auth("esgf:replicate"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def stored_seqs(server: IndexServer) -> list[int]:
    db = sqlite3.connect(f"file:{server.state_dir / 'index.sqlite3'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT seq FROM changes ORDER BY seq")]
    finally:
        db.close()


def feed_seqs(server: IndexServer) -> list[int]:
    with server.client() as c:
        r = c.get(
            "/api/v1/changes",
            params={"since": 0, "limit": 1000},
            headers=server.auth("esgf:replicate"),
        )
    return [e["seq"] for e in r.json()["changes"]]


def test_replica_killed_mid_apply_converges(tmp_path: Path) -> None:
    master = start_master(tmp_path / "master")
    replica = start_replica(tmp_path / "replica", master)
    try:
        assert master.publish(one_dataset(seed=1)).status_code == 200
        caught_up(replica, master)
        start = seq_of(master)
        token = replica.auth("esgf:replicate")
        with replica.client() as c:
            assert c.post("/api/v1/replication/pause", headers=token).status_code == 200
        for i in range(8):
            assert master.publish(big_batch(100 + i, 1500)).status_code == 200
        end = seq_of(master)
        with replica.client() as c:
            assert c.post("/api/v1/replication/resume", headers=token).status_code == 200
        wait_for(lambda: seq_of(replica) > start, 20, "the replica to start applying")
        replica.kill()
        position = stored_seqs(replica)[-1]
        assert start < position < end, (start, position, end)
        replica.start()
        caught_up(replica, master)
        result = verify(master, replica)
        assert result.returncode == 0 and "identical" in result.stdout, result.stdout
        assert stored_seqs(replica) == stored_seqs(master)
    finally:
        replica.stop()
        master.stop()


def test_master_killed_mid_publication_never_shows_half_a_batch(tmp_path: Path) -> None:
    port = free_port()
    master = start_master(tmp_path / "master", port)
    replica = start_replica(tmp_path / "replica", master)
    try:
        assert master.publish(one_dataset(seed=1)).status_code == 200
        caught_up(replica, master)
        batch = big_batch(7, 6000)
        ds_id, total = dataset_id(batch), 6000
        seen: set[int] = set()
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen.add(file_count(replica, ds_id))

        watcher = threading.Thread(target=watch)
        watcher.start()
        body = orjson.dumps(batch)

        def publish() -> None:
            try:
                with master.client() as c:
                    c.post("/api/v1/publish", content=body, headers=master.auth())
            except httpx.HTTPError:
                pass  # killed under our feet: expected

        publisher = threading.Thread(target=publish)
        publisher.start()
        time.sleep(0.4)
        master.kill()
        publisher.join(30)
        master = start_master(master.state_dir, port)
        result = master.publish(batch)  # the publisher re-runs its publication
        assert result.status_code == 200, result.text
        wait_for(lambda: file_count(replica, ds_id) == total, 30, "the batch on the replica")
        time.sleep(0.3)
        stop.set()
        watcher.join(10)
        assert seen <= {0, total}, sorted(seen)[:10]
        assert total in seen
        check = verify(master, replica)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        replica.stop()
        master.stop()


def test_upstream_unreachable_then_back_loses_and_doubles_nothing(tmp_path: Path) -> None:
    port = free_port()
    master = start_master(tmp_path / "master", port)
    replica = start_replica(tmp_path / "replica", master, "--max-lag", "2")
    try:
        first = one_dataset(seed=1)
        assert master.publish(first).status_code == 200
        caught_up(replica, master)
        master.kill()
        # still serving what it has, and saying since when the master is gone
        assert replica.search(id=dataset_id(first))["response"]["numFound"] == 1

        def not_ready() -> dict | None:
            with replica.client() as c:
                r = c.get("/readyz")
            return r.json() if r.status_code == 503 else None

        body = wait_for(not_ready, 15, "readiness to fail on lag")
        assert isinstance(body, dict)
        assert body["upstream"]["state"].startswith("unreachable since 20")
        assert body["lag"] > 2 and "unreachable since" in body["reason"]
        with replica.client() as c:
            lag = float(c.get("/esg-search/search").headers["X-ESGF-Replication-Lag"])
        assert lag > 2
        # a restart while the master is away does not make the replica look fresh
        replica.stop()
        assert replica.start_unready().status_code == 503
        again = not_ready()
        assert again is not None and again["lag"] > lag
        assert replica.search(id=dataset_id(first))["response"]["numFound"] == 1
        master = start_master(master.state_dir, port)
        for seed in (2, 3, 4):
            assert master.publish(one_dataset(seed=seed)).status_code == 200
        caught_up(replica, master)
        with replica.client() as c:
            assert wait_for(lambda: c.get("/readyz").status_code == 200, 15, "ready again")
        assert feed_seqs(replica) == feed_seqs(master) == list(range(1, seq_of(master) + 1))
        assert replication(replica)["applied_entries"] == 3
        check = verify(master, replica)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        replica.stop()
        master.stop()


def test_replica_ahead_of_a_restored_master_bootstraps_again(tmp_path: Path) -> None:
    port = free_port()
    master = start_master(tmp_path / "master", port)
    replica = start_replica(tmp_path / "replica", master)
    backup = tmp_path / "backup"
    try:
        kept = one_dataset(seed=1)
        assert master.publish(kept).status_code == 200
        master.stop()
        shutil.copytree(master.state_dir, backup)
        master.start()
        lost = one_dataset(seed=2)
        assert master.publish(lost).status_code == 200
        assert master.publish(one_dataset(seed=3)).status_code == 200
        caught_up(replica, master)
        assert seq_of(replica) == 3

        def restore() -> IndexServer:
            master.kill()
            shutil.rmtree(master.state_dir)
            shutil.copytree(backup, master.state_dir)
            return start_master(master.state_dir, port)

        # 1. the restored master's log ends before the replica's position
        master = restore()
        wait_for(lambda: seq_of(replica) == 1, 30, "the replica to bootstrap again")
        assert replica.search(id=dataset_id(lost))["response"]["numFound"] == 0
        status = replication(replica)["upstream"]
        assert status["bootstraps"] == 2 and "is ahead of the upstream" in status["last_bootstrap"]
        check = verify(master, replica)
        assert check.returncode == 0, check.stdout + check.stderr

        # 2. the restored master moved on past the replica's position with other entries
        assert master.publish(lost).status_code == 200
        caught_up(replica, master)
        with replica.client() as c:
            auth = replica.auth("esgf:replicate")
            assert c.post("/api/v1/replication/pause", headers=auth).status_code == 200
        master = restore()
        for seed in (4, 5, 6):
            assert master.publish(one_dataset(seed=seed)).status_code == 200
        with replica.client() as c:
            assert c.post("/api/v1/replication/resume", headers=auth).status_code == 200
        caught_up(replica, master)
        assert replica.search(id=dataset_id(lost))["response"]["numFound"] == 0
        status = replication(replica)["upstream"]
        assert status["bootstraps"] == 3 and "differs" in status["last_bootstrap"]
        check = verify(master, replica)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        replica.stop()
        master.stop()


def test_bulk_load_on_the_master_makes_replicas_bootstrap(tmp_path: Path) -> None:
    """Bulk loads log a count, not records: a replica reaching one copies a snapshot."""
    from esgf_ha.index.service import IndexService
    from esgf_ha.records.samples import cmip6_samples

    port = free_port()
    master = start_master(tmp_path / "master", port)
    replica = start_replica(tmp_path / "replica", master)
    try:
        assert master.publish(one_dataset(seed=1)).status_code == 200
        caught_up(replica, master)
        master.stop()
        service = IndexService.open(master.state_dir)
        samples = cmip6_samples(30, seed=11)
        service.bulk_load([s.dataset for s in samples], [f for s in samples for f in s.files])
        service.close()
        master = start_master(master.state_dir, port)
        caught_up(replica, master)
        status = replication(replica)["upstream"]
        assert status["bootstraps"] == 2 and "bulk load" in status["last_bootstrap"]
        wanted = samples[5].dataset["id"]
        assert replica.search(id=wanted)["response"]["numFound"] == 1
        check = verify(master, replica)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        replica.stop()
        master.stop()


def test_restarted_replica_of_an_idle_master_stays_ready(tmp_path: Path) -> None:
    """A replica restarted while its master has nothing new is current as soon as the master
    answers: its readiness must not wait out a long poll with the lag growing meanwhile."""
    master = start_master(tmp_path / "master")
    replica = start_replica(tmp_path / "replica", master, "--max-lag", "2")
    try:
        assert master.publish(one_dataset(seed=1)).status_code == 200
        caught_up(replica, master)
        time.sleep(3.0)  # the last contact it saved is now older than --max-lag
        replica.stop()
        replica.start_unready()
        began = time.monotonic()
        answers = []
        with replica.client() as c:
            # ready at once, and all along one idle long poll of the master (20 s)
            while time.monotonic() - began < 8:
                r = c.get("/readyz")
                answers.append((round(time.monotonic() - began, 1), r.status_code))
                time.sleep(0.2)
        unready = [a for a in answers if a[1] != 200]
        assert not unready or unready[-1][0] < 1.0, unready
        assert replication(replica)["upstream"]["state"] == "following"
    finally:
        replica.stop()
        master.stop()
