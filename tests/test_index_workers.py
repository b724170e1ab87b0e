"""`serve index --workers N`: every worker answers as the one-process index does, right after
any write landing on any worker; a killed worker costs a retrying client nothing and is
replaced; SIGTERM stops them all."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from esgf_ha.common.index_client import IndexClient
from esgf_ha.records.samples import as_batch, cmip5_samples, cmip6_samples
from tests.replicas import caught_up, wait_for
from tests.servers import IndexServer, logged

WORKERS = 3
QUERIES: list[dict[str, object]] = [
    {"facets": "source_id,experiment_id,variable_id,project", "limit": 50},
    {"project": "CMIP6", "facets": "source_id", "limit": 50},
    {"type": "File", "facets": "variable_id", "limit": 100},
    {"query": "historical", "limit": 50},
    {"retracted": "true", "limit": 50},
    {"latest": "true", "facets": "experiment_id", "limit": 50},
]


def answer(r: httpx.Response) -> dict[str, Any]:
    """What must match between two indexes: hits, ids and facet counts (not timestamps)."""
    assert r.status_code == 200, r.text
    body = r.json()
    return {
        "found": body["response"]["numFound"],
        "ids": sorted(d["id"] for d in body["response"]["docs"]),
        "facets": body.get("facet_counts", {}).get("facet_fields", {}),
    }


def ask(server: IndexServer, params: dict[str, object]) -> tuple[dict[str, Any], str]:
    """One search on a fresh connection (so the kernel may hand it to any worker)."""
    params = {"format": "application/solr+json", **params}
    with server.client() as c:
        r = c.get("/esg-search/search", params=params)  # type: ignore[arg-type]
    return answer(r), r.headers.get("X-ESGF-Worker", "")


def assert_same_everywhere(
    single: IndexServer, pool: IndexServer, seen: set[str], rounds: int = 4
) -> None:
    """Every query answers on the pool's workers as on the one-process index."""
    for params in QUERIES:
        expected, worker = ask(single, params)
        assert worker == "", "the one-process index names no worker"
        for _ in range(rounds):
            got, worker = ask(pool, params)
            seen.add(worker.split(":")[0])
            assert got == expected, (params, worker)


def write_both(
    single: IndexServer, pool: IndexServer, path: str, body: bytes, xml: bool = False
) -> None:
    for server in (single, pool):
        headers = server.auth()
        if xml:
            headers["Content-Type"] = "text/xml"
        with server.client() as c:
            r = c.post(path, content=body, headers=headers)
        assert r.status_code == 200, (server.workers, r.text)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[IndexServer, IndexServer]]:
    single = IndexServer(tmp_path / "single").start()
    pool = IndexServer(tmp_path / "pool", workers=WORKERS)
    try:
        pool.start()
        yield single, pool
    finally:
        single.stop()
        pool.stop()


def test_every_worker_answers_as_one_process_after_each_write(
    pair: tuple[IndexServer, IndexServer],
) -> None:
    single, pool = pair
    seen: set[str] = set()
    cmip6, cmip5 = cmip6_samples(12), cmip5_samples(4)
    # several batches, each landing on whichever worker takes its connection
    for part in (cmip6[:4], cmip6[4:8], cmip6[8:], cmip5):
        write_both(single, pool, "/api/v1/publish", orjson.dumps(as_batch(part)))
        assert_same_everywhere(single, pool, seen)
    retract = {"ids": [cmip6[0].dataset["id"], cmip5[1].dataset["id"]]}
    write_both(single, pool, "/api/v1/retract", orjson.dumps(retract))
    assert_same_everywhere(single, pool, seen)
    delete = {"ids": [cmip6[5].dataset["id"]]}
    write_both(single, pool, "/api/v1/delete", orjson.dumps(delete))
    assert_same_everywhere(single, pool, seen)
    target = str(cmip6[7].dataset["id"])
    update = (
        f'<updates core="datasets" action="set"><update><query>id={target}</query>'
        '<field name="experiment_id"><value>piControl-moved</value></field></update></updates>'
    ).encode()
    write_both(single, pool, "/esg-search/ws/update", update, xml=True)
    assert_same_everywhere(single, pool, seen)
    moved, _ = ask(pool, {"experiment_id": "piControl-moved"})
    assert moved["ids"] == [target]
    assert seen == {str(i) for i in range(WORKERS)}, f"not every worker answered: {seen}"


def test_concurrent_writes_on_every_worker_lose_nothing(tmp_path: Path) -> None:
    """Batches published at once through many connections (so on different workers) all land,
    and every worker then counts all of them."""
    pool = IndexServer(tmp_path / "pool", workers=WORKERS)
    samples = cmip6_samples(24, seed=7)
    errors: list[str] = []

    def publish(part: list) -> None:
        with pool.client() as c:
            r = c.post("/api/v1/publish", content=orjson.dumps(as_batch(part)), headers=pool.auth())
        if r.status_code != 200:
            errors.append(r.text)

    try:
        pool.start()
        threads = [
            threading.Thread(target=publish, args=(samples[i : i + 2],))
            for i in range(0, len(samples), 2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        seen = set()
        for _ in range(12):
            got, worker = ask(pool, {"limit": 0, "facets": "source_id"})
            seen.add(worker.split(":")[0])
            assert got["found"] == len(samples)
            counts = got["facets"]["source_id"]
            assert sum(counts[1::2]) == len(samples)
        assert len(seen) > 1
        assert logged(pool.log_path, msg="worker failed") == []
    finally:
        pool.stop()


def test_worker_started_while_others_commit_comes_up(tmp_path: Path) -> None:
    """A worker (re)started while another worker commits without pause opens the store and
    serves: opening must wait for the write lock, not fail on a write committed meanwhile."""
    pool = IndexServer(tmp_path / "pool", workers=2)
    samples = cmip6_samples(50, seed=5)
    stop = threading.Event()
    errors: list[str] = []

    def publish_without_pause() -> None:
        # publishing a dataset again replaces it: a commit each time, for as long as needed
        with IndexClient(pool.url, token=pool.token(), timeout=30) as client:
            for sample in itertools.cycle(samples):
                if stop.is_set():
                    return
                try:
                    client.publish([{"dataset": sample.dataset, "files": sample.files}])
                except Exception as exc:  # noqa: BLE001 - collected for the assertion
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return

    try:
        pool.start()
        pids = wait_for(lambda: len(p := worker_pids(pool)) == 2 and p)
        assert isinstance(pids, dict)
        writer = threading.Thread(target=publish_without_pause)
        writer.start()
        for _ in range(3):
            # the writes keep going on the other worker meanwhile
            time.sleep(0.3)
            assert writer.is_alive(), errors
            old = pids["1"]
            os.kill(old, signal.SIGKILL)
            pids = wait_for(
                lambda gone=old: (p := worker_pids(pool)).get("1") not in (None, gone) and p
            )
            assert isinstance(pids, dict), "the killed worker was not replaced"
        stop.set()
        writer.join(60)
        assert errors == []
        assert logged(pool.log_path, msg="worker failed") == []
        counts = {ask(pool, {"limit": 0})[0]["found"] for _ in range(12)}
        assert counts == {len({s.dataset["id"] for s in samples})}
    finally:
        stop.set()
        pool.stop()


def test_replica_with_workers_answers_as_its_master(tmp_path: Path) -> None:
    master = IndexServer(tmp_path / "master").start()
    replica = None
    try:
        samples = cmip6_samples(6, seed=3)
        # the replica's first copy is a snapshot bootstrap on worker 0, which swaps the store
        # file: the other worker must reopen it
        assert master.publish(as_batch(samples[:3])).status_code == 200
        token = master.token("esgf:replicate")
        replica = IndexServer(
            tmp_path / "replica",
            role="replica",
            workers=2,
            extra_args=["--upstream", master.url, "--token", token],
        ).start()
        seen: set[str] = set()
        caught_up(replica, master)
        assert_same_everywhere(master, replica, seen)
        assert master.publish(as_batch(samples[3:])).status_code == 200
        caught_up(replica, master)
        assert_same_everywhere(master, replica, seen)
        with master.client() as c:
            r = c.post(
                "/api/v1/retract",
                content=orjson.dumps({"ids": [samples[1].dataset["id"]]}),
                headers=master.auth(),
            )
        assert r.status_code == 200, r.text
        caught_up(replica, master)
        assert_same_everywhere(master, replica, seen)
        assert seen == {"0", "1"}
        # the worker without the follower reports the follower's view, not a blank one
        target = _seq(master)
        wait_for(lambda: replication_views(replica, target) == {"0", "1"}, 30, "both views")
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


def replication_views(replica: IndexServer, seq: int) -> set[str]:
    """Workers whose replication status shows the upstream at `seq`, following, ready."""
    good = set()
    auth = replica.auth("esgf:replicate")
    for _ in range(12):
        with replica.client() as c:
            status = c.get("/api/v1/replication", headers=auth)
            ready = c.get("/readyz")
        body = status.json()
        if (
            body["upstream"]["seq"] == seq
            and body["upstream"]["state"] == "following"
            and body["lag"] < 5
            and ready.status_code == 200
        ):
            good.add(status.headers["X-ESGF-Worker"].split(":")[0])
    return good


def worker_pids(pool: IndexServer, tries: int = 40) -> dict[str, int]:
    """Worker number: pid, as the workers name themselves in their answers."""
    found: dict[str, int] = {}
    for _ in range(tries):
        with pool.client() as c:
            r = c.get("/livez")
        number, pid = r.headers["X-ESGF-Worker"].split(":")
        found[number] = int(pid)
    return found


def test_killed_worker_loses_no_request_and_is_replaced(tmp_path: Path) -> None:
    pool = IndexServer(tmp_path / "pool", workers=2)
    samples = cmip6_samples(30, seed=11)
    failures: list[str] = []
    published: list[str] = []
    stop = threading.Event()

    def load() -> None:
        # the project's retry policy: a reset connection is retried, on whichever worker
        with IndexClient(pool.url, token=pool.token(), timeout=30) as client:
            for sample in samples:
                try:
                    client.publish([{"dataset": sample.dataset, "files": sample.files}])
                    published.append(str(sample.dataset["id"]))
                    for _ in range(5):
                        found = client.search({"limit": 0})["response"]["numFound"]
                        assert found >= len(published), (found, len(published))
                except Exception as exc:  # noqa: BLE001 - collected for the assertion
                    failures.append(f"{type(exc).__name__}: {exc}")
                if stop.is_set():
                    return

    try:
        pool.start()
        before = wait_for(lambda: len(worker_pids(pool)) == 2 and worker_pids(pool))
        assert isinstance(before, dict)
        runner = threading.Thread(target=load)
        runner.start()
        time.sleep(0.5)
        os.kill(before["1"], signal.SIGKILL)
        runner.join(120)
        assert not runner.is_alive()
        assert failures == []
        assert len(published) == len(samples)
        got, _ = ask(pool, {"limit": 100})
        assert sorted(got["ids"]) == sorted(published)
        after = wait_for(lambda: (p := worker_pids(pool)).get("1") not in (None, before["1"]) and p)
        assert isinstance(after, dict) and after["0"] == before["0"]
    finally:
        stop.set()
        pool.stop()


def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    pool = IndexServer(tmp_path / "pool", workers=WORKERS).start()
    pids = wait_for(lambda: len(p := worker_pids(pool)) == WORKERS and p)
    assert isinstance(pids, dict)
    batch = as_batch(cmip6_samples(2))
    assert pool.publish(batch).status_code == 200
    assert pool.proc is not None
    pool.proc.send_signal(signal.SIGTERM)
    assert pool.proc.wait(20) == 0
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), (
            f"worker {pid} outlived its parent"
        )
    # the supervisor saved a facet snapshot matching the store: the next start loads it
    meta = orjson.loads((tmp_path / "pool" / "facets.snapshot" / "meta.json").read_bytes())
    restarted = IndexServer(tmp_path / "pool").start()
    try:
        found = restarted.search(limit=0)["response"]["numFound"]
        assert found == len(batch["datasets"])  # type: ignore[arg-type]
        assert meta["seq"] == _seq(restarted)
        opened = logged(restarted.log_path, msg="index opened")
        assert opened[-1]["from_snapshot"] is True
    finally:
        restarted.stop()


def _seq(server: IndexServer) -> int:
    with server.client() as c:
        return int(
            c.get("/esg-search/search", params={"limit": 0}).headers["X-ESGF-Index-Sequence"]
        )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def test_sigterm_drains_every_worker_first(tmp_path: Path) -> None:
    """During the drain every worker answers /readyz 503 and still serves searches."""
    pool = IndexServer(tmp_path / "pool", workers=2, extra_args=["--drain-seconds", "8"]).start()
    assert pool.proc is not None
    try:
        wait_for(lambda: len(worker_pids(pool)) == 2, 20, "two workers")
        pool.proc.send_signal(signal.SIGTERM)
        draining: set[str] = set()
        ends = time.monotonic() + 4  # well inside the drain
        while draining != {"0", "1"} and time.monotonic() < ends:
            with pool.client() as c:
                ready = c.get("/readyz")
                search = c.get("/esg-search/search", params={"limit": 0})
            assert ready.status_code == 503, ready.text
            assert search.status_code == 200
            draining.add(search.headers["X-ESGF-Worker"].split(":")[0])
        assert draining == {"0", "1"}
        assert pool.proc.wait(20) == 0
    finally:
        pool.stop()


def test_long_polls_wake_on_any_workers_commit(tmp_path: Path) -> None:
    """A downstream replica's long-poll, held by one worker, answers soon after a commit that
    may land on another worker."""
    pool = IndexServer(tmp_path / "pool", workers=2).start()
    auth = pool.auth("esgf:replicate")
    try:
        for sample in cmip6_samples(4, seed=5):
            since = _seq(pool)
            got: dict[str, Any] = {}

            def poll(since: int = since, got: dict[str, Any] = got) -> None:
                began = time.monotonic()
                with pool.client() as c:
                    params = {"since": since, "wait": 15}
                    got["r"] = c.get("/api/v1/changes", params=params, headers=auth)
                got["took"] = time.monotonic() - began

            waiter = threading.Thread(target=poll)
            waiter.start()
            time.sleep(0.5)
            with pool.client() as c:
                r = c.post(
                    "/api/v1/publish",
                    content=orjson.dumps(as_batch([sample])),
                    headers=pool.auth(),
                )
            assert r.status_code == 200, r.text
            waiter.join(20)
            answer = got["r"]
            assert answer.status_code == 200, answer.text
            assert [c["seq"] for c in answer.json()["changes"]] == [since + 1]
            assert got["took"] < 5, got["took"]
    finally:
        pool.stop()


def test_a_burst_of_kept_alive_connections_spreads_over_the_workers(tmp_path: Path) -> None:
    """Clients that open their connections together and keep them (a download tool's pool,
    a load balancer) must not all land on the worker that woke first."""
    pool = IndexServer(tmp_path / "pool", workers=2)
    connections = 64
    try:
        pool.start()
        wait_for(lambda: len(worker_pids(pool)) == 2)
        clients = [pool.client() for _ in range(connections)]
        try:
            barrier = threading.Barrier(connections)
            answered: list[str] = []

            def first_search(client: httpx.Client) -> None:
                barrier.wait()
                r = client.get("/esg-search/search", params={"limit": 0})
                answered.append(r.headers.get("X-ESGF-Worker", "").split(":")[0])

            threads = [threading.Thread(target=first_search, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            for c in clients:
                c.close()
        assert len(answered) == connections
        # each worker takes at least a quarter of them (P(fail) ~ 1e-4 with even spreading)
        counts = {w: answered.count(w) for w in ("0", "1")}
        assert min(counts.values()) >= connections // 4, counts
    finally:
        pool.stop()
