"""Index replication, normal flow: a master, a replica following it and a replica following
that replica (a chain), all real processes on loopback.

Covers the change feed (auth, parameters, long-poll), snapshot bootstrap, every kind of change
reaching every replica (publish, new version flipping `latest`, retract, delete, esgcet
/ws/update), freshness headers and /readyz, refusal of writes on replicas, pause/resume with the
CLI, and `esgf-ha index verify` both agreeing and naming differences.
"""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from esgf_ha.records.samples import as_batch, cmip5_samples, cmip6_samples
from tests.replicas import caught_up, seq_of, start_master, start_replica, verify, wait_for
from tests.servers import IndexServer
from tests.test_publish import bump_version, one_dataset


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[IndexServer]]:
    root = tmp_path_factory.mktemp("chain")
    master = start_master(root / "master")
    assert master.publish(as_batch(cmip6_samples(6) + cmip5_samples(2))).status_code == 200
    first = start_replica(root / "replica1", master)
    second = start_replica(root / "replica2", first)
    servers = [master, first, second]
    yield servers
    for server in reversed(servers):
        server.stop()


def ids(server: IndexServer, **params: object) -> set[str]:
    docs = server.search(limit=1000, fields="id", **params)["response"]["docs"]
    return {d["id"] for d in docs}


def converged(servers: list[IndexServer]) -> None:
    for replica in servers[1:]:
        caught_up(replica, servers[0])


def test_replicas_bootstrap_with_the_masters_content(chain: list[IndexServer]) -> None:
    master, first, second = chain
    converged(chain)
    for core in ("Dataset", "File"):
        assert ids(first, type=core) == ids(master, type=core) == ids(second, type=core)
    assert ids(master, type="File")
    for replica in (first, second):
        with replica.client() as c:
            ready = c.get("/readyz")
        body = ready.json()
        assert ready.status_code == 200 and body["role"] == "replica"
        assert body["seq"] == seq_of(master) and body["lag"] == 0
        assert body["upstream"]["state"] == "following"
        assert "initial copy" in body["upstream"]["last_bootstrap"]


def test_every_kind_of_change_reaches_every_replica(chain: list[IndexServer]) -> None:
    master = chain[0]
    v1 = one_dataset(seed=77, version="20200101")
    assert master.publish(v1).status_code == 200
    v2 = {"datasets": [bump_version(v1["datasets"][0], "20210101")]}
    assert master.publish(v2).status_code == 200
    converged(chain)
    old_id, new_id = v1["datasets"][0]["dataset"]["id"], v2["datasets"][0]["dataset"]["id"]
    for server in chain:
        assert ids(server, latest="true", id=old_id) == set()
        assert ids(server, latest="true", id=new_id) == {new_id}
        assert ids(server, type="File", latest="false", dataset_id=old_id)
    # retract the new version, delete the old one, update a field with the esgcet protocol
    auth = master.auth()
    with master.client() as c:
        assert c.post("/api/v1/retract", json={"ids": [new_id]}, headers=auth).status_code == 200
        assert c.post("/api/v1/delete", json={"ids": [old_id]}, headers=auth).status_code == 200
    target = sorted(ids(master, type="Dataset", latest="true"))[0]
    update = (
        '<updates core="datasets" action="set"><update><query>id='
        f'{target}</query><field name="xlink"><value>http://doi.example/x|DOI|citation</value>'
        "</field></update></updates>"
    )
    with master.client() as c:
        r = c.post("/esg-search/ws/update", content=update, headers=auth)
        assert r.status_code == 200, r.text
    converged(chain)
    for server in chain:
        assert ids(server, id=old_id) == set()
        assert ids(server, type="File", dataset_id=old_id) == set()
        doc = server.search(id=new_id)["response"]["docs"][0]
        assert doc["retracted"] is True and doc["latest"] is False
        assert ids(server, type="File", dataset_id=new_id) == set()
        updated = server.search(id=target, fields="xlink")["response"]["docs"][0]
        assert updated["xlink"] == ["http://doi.example/x|DOI|citation"]
    for replica in chain[1:]:
        result = verify(master, replica)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "identical" in result.stdout


def test_search_headers_and_changes_feed(chain: list[IndexServer]) -> None:
    master, first, _ = chain
    converged(chain)
    with first.client() as c:
        r = c.get("/esg-search/search", params={"limit": 0})
    assert r.headers["X-ESGF-Index-Sequence"] == str(seq_of(master))
    assert float(r.headers["X-ESGF-Replication-Lag"]) == 0.0
    with master.client() as c:
        r = c.get("/esg-search/search", params={"limit": 0})
        assert float(r.headers["X-ESGF-Replication-Lag"]) == 0.0
        feed = c.get(
            "/api/v1/changes",
            params={"since": 0, "limit": 2},
            headers=master.auth("esgf:replicate"),
        ).json()
    assert [e["seq"] for e in feed["changes"]] == [1, 2]
    assert feed["last_seq"] == seq_of(master) and feed["ahead"] is False
    first_entry = feed["changes"][0]
    assert first_entry["kind"] == "publish" and first_entry["payload"]["put"]
    assert {core for core, _ in first_entry["payload"]["put"]} == {"Dataset", "File"}
    assert feed["next_at"] == pytest.approx(feed["changes"][1]["at"], abs=1e9)
    # the replica serves its own identical feed to downstream replicas (chains)
    with first.client() as c:
        mirror = c.get(
            "/api/v1/changes", params={"since": 0, "limit": 2}, headers=first.auth("esgf:replicate")
        ).json()
    assert mirror["changes"] == feed["changes"]
    # what replicas ask for: the payload as stored, compressed
    with master.client() as c:
        packed = c.get(
            "/api/v1/changes",
            params={"since": 0, "limit": 2, "encoding": "zlib"},
            headers=master.auth("esgf:replicate"),
        ).json()
    entry = packed["changes"][0]
    assert "payload" not in entry
    assert orjson.loads(zlib.decompress(base64.b64decode(entry["z"]))) == first_entry["payload"]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/changes", "GET"),
        ("/api/v1/snapshot", "GET"),
        ("/api/v1/digest", "POST"),
        ("/api/v1/replication", "GET"),
    ],
)
def test_replication_endpoints_need_the_replicate_scope(
    chain: list[IndexServer], path: str, method: str
) -> None:
    master = chain[0]
    with master.client() as c:
        anonymous = c.request(method, path, json={"core": "File", "ranges": [["", None]]})
        publisher = c.request(
            method, path, headers=master.auth("esgf:publish"), json={"core": "File"}
        )
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["WWW-Authenticate"]
    assert publisher.status_code == 403 and "esgf:replicate" in publisher.json()["error"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"since": "x"}, "since must be an integer"),
        ({"since": "-1"}, "since must be between"),
        ({"limit": "100000"}, "limit must be between"),
        ({"wait": "soon"}, "wait must be a number"),
        ({"wait": "3600"}, "wait must be between"),
        ({"encoding": "gzip"}, "encoding must be json or zlib"),
    ],
)
def test_bad_changes_parameters_get_400(
    chain: list[IndexServer], params: dict, fragment: str
) -> None:
    master = chain[0]
    with master.client() as c:
        r = c.get("/api/v1/changes", params=params, headers=master.auth("esgf:replicate"))
    assert r.status_code == 400 and fragment in r.json()["error"]


def test_bad_digest_requests_get_400(chain: list[IndexServer]) -> None:
    master = chain[0]
    auth = master.auth("esgf:replicate")
    with master.client() as c:
        for body in (b"[", b'{"core": "Nope"}', b'{"core": "File", "ranges": [[1, 2]]}'):
            r = c.post("/api/v1/digest", content=body, headers=auth)
            assert r.status_code == 400, r.text


def test_long_poll_wakes_on_publish_and_blocks_nothing(chain: list[IndexServer]) -> None:
    master = chain[0]
    since = seq_of(master)
    auth = master.auth("esgf:replicate")
    answer: dict = {}

    def poll() -> None:
        began = time.monotonic()
        with master.client() as c:
            r = c.get("/api/v1/changes", params={"since": since, "wait": 20}, headers=auth)
        answer.update(r.json(), took=time.monotonic() - began)

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)
    # other requests are served while the long-poll waits
    began = time.monotonic()
    master.search(limit=0)
    assert time.monotonic() - began < 2
    assert waiter.is_alive()
    assert master.publish(one_dataset(seed=91)).status_code == 200
    waiter.join(10)
    assert not waiter.is_alive()
    assert answer["took"] < 5 and [e["seq"] for e in answer["changes"]] == [since + 1]


def test_replicas_refuse_writes(chain: list[IndexServer]) -> None:
    master, first, _ = chain
    token = first.token("esgf:publish")
    with first.client() as c:
        r = c.post(
            "/api/v1/publish",
            content=orjson.dumps(one_dataset(seed=3)),
            headers={"Authorization": f"Bearer {token}"},
        )
        legacy = c.post("/esg-search/ws/retract", data={"id": "x"})
    assert r.status_code == 403
    assert "read-only replica" in r.json()["error"] and master.url in r.json()["error"]
    assert legacy.status_code == 403


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "esgf_ha", *args], capture_output=True, text=True, timeout=60
    )


def test_pause_and_resume(chain: list[IndexServer]) -> None:
    master, first, second = chain
    converged(chain)
    token = first.token("esgf:replicate")
    paused = _cli("replication", "pause", "--replica", first.url, "--token", token)
    assert paused.returncode == 0 and "paused at seq" in paused.stdout, paused.stderr
    batch = one_dataset(seed=123)
    new_id = batch["datasets"][0]["dataset"]["id"]
    assert master.publish(batch).status_code == 200
    time.sleep(1.5)
    assert ids(first, id=new_id) == set() and ids(second, id=new_id) == set()
    status = _cli("replication", "status", "--replica", first.url, "--token", token)
    body = orjson.loads(status.stdout)
    assert body["upstream"]["paused"] is True and body["upstream"]["state"] == "paused"
    wait_for(
        lambda: (
            orjson.loads(
                _cli("replication", "status", "--replica", first.url, "--token", token).stdout
            )["lag"]
            > 1
        ),
        10,
        "a growing lag while paused",
    )
    resumed = _cli("replication", "resume", "--replica", first.url, "--token", token)
    assert resumed.returncode == 0, resumed.stderr
    converged(chain)
    assert ids(first, id=new_id) == {new_id} == ids(second, id=new_id)
    # the master follows nobody
    with master.client() as c:
        r = c.post("/api/v1/replication/pause", headers=master.auth("esgf:replicate"))
    assert r.status_code == 400 and "master" in r.json()["error"]


def test_verify_names_the_records_that_differ(chain: list[IndexServer]) -> None:
    """Last in the module: it damages the end of the chain behind its back."""
    master, _, second = chain
    converged(chain)
    victim = sorted(ids(master, type="File"))[3]
    second.stop()
    db = sqlite3.connect(second.state_dir / "index.sqlite3")
    with db:
        db.execute("DELETE FROM files WHERE id = ?", (victim,))
    db.close()
    second.start()
    result = verify(master, second)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"File {victim}: missing on replica" in result.stdout
    assert "1 differences" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["replication"],
        ["replication", "pause"],
        ["replication", "resume"],
        ["replication", "status"],
        ["index"],
        ["index", "verify"],
    ],
)
def test_help_has_examples(command: list[str]) -> None:
    result = _cli(*command, "--help")
    assert result.returncode == 0
    assert "Examples:" in result.stdout and "esgf-ha " in result.stdout


def test_cli_errors_are_clear(chain: list[IndexServer]) -> None:
    master = chain[0]
    result = _cli("replication", "pause", "--replica", "http://127.0.0.1:9", "--token", "t")
    assert result.returncode == 1 and "cannot reach" in result.stderr
    result = _cli("replication", "pause", "--replica", master.url, "--token", "junk")
    assert result.returncode == 1 and "HTTP 401" in result.stderr
    result = _cli("index", "verify", "--master", master.url, "--replica", master.url)
    assert result.returncode == 2 and "--token" in result.stderr
    result = _cli(
        "index",
        "verify",
        "--master",
        master.url,
        "--replica",
        "http://127.0.0.1:9",
        "--token",
        master.token("esgf:replicate"),
    )
    assert result.returncode == 2 and "replica" in result.stderr
    assert "Traceback" not in result.stderr


def test_replica_needs_upstream_and_token(tmp_path: Path) -> None:
    r = _cli("serve", "index", "--role", "replica", "--state-dir", str(tmp_path))
    assert r.returncode != 0 and "--upstream" in r.stderr
    r = _cli(
        "serve",
        "index",
        "--role",
        "replica",
        "--state-dir",
        str(tmp_path),
        "--upstream",
        "http://127.0.0.1:9",
    )
    assert r.returncode != 0 and "--token" in r.stderr


def test_replica_with_a_bad_token_reports_refusal(chain: list[IndexServer], tmp_path: Path) -> None:
    master = chain[0]
    server = IndexServer(
        tmp_path / "bad",
        role="replica",
        extra_args=["--upstream", master.url, "--token", master.token("esgf:publish")],
    )
    server.state_dir.mkdir(parents=True)
    try:
        # never ready: it cannot get the master's content
        assert server.start_unready().status_code == 503

        def refused() -> dict | None:
            body = httpx.get(server.url + "/readyz", timeout=5).json()
            return body if body["upstream"]["state"].startswith("refused") else None

        body = wait_for(refused, 30, "the replica to report the refusal")
        assert body["upstream"]["state"].startswith("refused: HTTP 403")
    finally:
        server.kill()


def test_replica_of_an_https_master(tmp_path: Path) -> None:
    master = IndexServer(tmp_path / "master", tls=True).start()
    try:
        assert master.publish(one_dataset(seed=8)).status_code == 200
        replica = start_replica(tmp_path / "replica", master, "--upstream-ca", str(master.ca))
        try:
            caught_up(replica, master)
            assert ids(replica, type="File") == ids(master, type="File") != set()
        finally:
            replica.stop()
    finally:
        master.stop()
