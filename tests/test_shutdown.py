"""SIGTERM stops every long-running service cleanly: `/readyz` turns 503 first while requests are
still served (each answer asks the client to close its connection), a download in flight
finishes whole, the wait for requests in flight is bounded, and the process exits 0."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from esgf_ha.common.server import wait_until_ready
from tests.servers import DataServer, IndexServer

FILE_SIZE = 48 * 1024 * 1024


@pytest.fixture
def big_root(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "root"
    path = root / "CMIP6" / "big.nc"
    path.parent.mkdir(parents=True)
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for i in range(FILE_SIZE // len(block)):
            chunk = block[i % 7 :] + block[: i % 7]  # not one block repeated
            f.write(chunk)
            digest.update(chunk)
    return root, digest.hexdigest()


def exit_status(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {timeout} s after SIGTERM") from None


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_data_node_drains_then_finishes_a_download_in_flight_and_exits_0(
    tmp_path: Path, big_root: tuple[Path, str]
) -> None:
    root, sha256 = big_root
    server = DataServer(
        tmp_path / "data", {"esg_dataroot": root},
        extra_args=["--drain-seconds", "2", "--grace-seconds", "30"],
    ).start()  # fmt: skip
    assert server.proc is not None
    url = f"{server.url}/thredds/fileServer/esg_dataroot/CMIP6/big.nc"
    try:
        with httpx.Client(timeout=30) as slow, slow.stream("GET", url) as download:
            assert download.status_code == 200
            body = download.iter_bytes(256 * 1024)
            first = next(body)
            digest = hashlib.sha256(first)
            got = len(first)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            # draining: not ready, but still serving, and asking clients to go elsewhere
            with httpx.Client(timeout=5) as other:
                ready = other.get(server.url + "/readyz")
                assert ready.status_code == 503
                assert ready.json()["ready"] is False
                head = other.head(url)
                assert head.status_code == 200
                assert head.headers["connection"] == "close"
            # the download started before the signal goes on to the last byte, slowly
            for chunk in body:
                digest.update(chunk)
                got += len(chunk)
                if got < 8 * 1024 * 1024:
                    time.sleep(0.01)
            assert got == FILE_SIZE
            assert digest.hexdigest() == sha256
        # past the drain the listening socket is closed; the process is gone soon after
        status = exit_status(server.proc, 30)
        assert status == 0, server.log_path.read_text()[-2000:] if server.log_path else ""
        assert refused(server.url + "/livez")
    finally:
        server.kill()


def test_a_stalled_request_holds_the_stop_no_longer_than_the_grace_period(
    tmp_path: Path, big_root: tuple[Path, str]
) -> None:
    root, _ = big_root
    server = DataServer(
        tmp_path / "data", {"esg_dataroot": root},
        extra_args=["--drain-seconds", "0", "--grace-seconds", "2"],
    ).start()  # fmt: skip
    assert server.proc is not None
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    stalled = socket.create_connection((host, int(port)), timeout=10)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.sendall(
            b"GET /thredds/fileServer/esg_dataroot/CMIP6/big.nc HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert stalled.recv(1024).startswith(b"HTTP/1.1 200")  # then never read again
        time.sleep(0.5)
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        status = exit_status(server.proc, 20)
        took = time.monotonic() - began
        assert status == 0
        assert took < 2 + 5, f"took {took:.1f} s with a 2 s grace period"
    finally:
        stalled.close()
        server.kill()


def test_index_drains_keeps_answering_searches_ends_long_polls_and_exits_0(
    tmp_path: Path,
) -> None:
    server = IndexServer(tmp_path / "index", extra_args=["--drain-seconds", "1.5"]).start()
    assert server.proc is not None
    long_poll: dict[str, object] = {}

    def follow() -> None:
        began = time.monotonic()
        r = httpx.get(server.url + "/api/v1/changes", params={"since": 0, "wait": 60},
                      headers=server.auth("esgf:replicate"), timeout=90)  # fmt: skip
        long_poll.update(status=r.status_code, took=time.monotonic() - began)

    poller = threading.Thread(target=follow)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            poller.start()
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert client.get("/readyz").status_code == 503
            search = client.get("/esg-search/search", params={"format": "application/solr+json"})
            assert search.status_code == 200
            assert search.headers["connection"] == "close"
            # a replica's long-poll stays open through the drain, then is answered at the stop
            assert "status" not in long_poll
        began = time.monotonic()
        assert exit_status(server.proc, 30) == 0
        assert time.monotonic() - began < 10
        poller.join(30)
        assert long_poll["status"] == 200
        assert 1.5 <= float(long_poll["took"]) < 15  # type: ignore[arg-type]
        assert refused(server.url + "/livez")
    finally:
        server.kill()


def test_dns_balancer_drains_and_exits_0(tmp_path: Path) -> None:
    config = {
        "state_dir": str(tmp_path / "state"),
        "sites": [{"name": "site-a", "address": "127.0.0.1", "index_port": 9, "data_port": None}],
        "dns": {"address": "127.0.0.1", "port": 0, "http_port": 0},
    }
    (tmp_path / "federation.yaml").write_text(yaml.safe_dump(config))
    state = tmp_path / "dns"
    state.mkdir()
    log = open(tmp_path / "dns.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "esgf_ha", "serve", "dns", "-c", str(tmp_path / "federation.yaml"),
         "--state-dir", str(state), "--drain-seconds", "1.5"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        url = wait_until_ready(state, "dns", proc, timeout=60)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(url + "/readyz", timeout=5).status_code == 503
        assert httpx.get(url + "/api/v1/status", timeout=5).status_code == 200
        assert exit_status(proc, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_replicator_following_the_master_stops_on_sigterm_with_status_0(tmp_path: Path) -> None:
    master = IndexServer(tmp_path / "master").start()
    token = tmp_path / "replicator.jwt"
    token.write_text(master.token("esgf:replicate", "esgf:publish", "esgf:download"))
    log_path = tmp_path / "replicator.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "esgf_ha", "replicate", "--state-dir", str(tmp_path / "repl"),
         "--index", master.url, "--token-file", str(token), "--site", "site-b",
         "--root", f"esg_dataroot={tmp_path / 'data-b'}", "--data-node", "http://127.0.0.1:9",
         "--query", "project=CMIP6", "--follow", "--poll", "30"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # the first round is over (it reports once) and it waits on the change log
        while b"queued" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert exit_status(proc, 20) == 0, log_path.read_text()
        assert time.monotonic() - began < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        master.stop()


def test_publisher_stops_at_a_dataset_boundary_on_sigterm_and_a_rerun_publishes_the_rest(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, "-m", "esgf_ha", "sample-data", str(data), "--datasets", "60",
         "--files-per-version", "1", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    master = IndexServer(tmp_path / "master").start()
    command = [sys.executable, "-m", "esgf_ha", "publish", "--index", master.url,
               "--data-node", "dn.example.org", "--root", f"esg_dataroot={data}",
               "--batch-files", "1", "--jobs", "1", "--no-progress", "--json", str(data)]  # fmt: skip
    env = {**os.environ, "ESGF_HA_TOKEN": master.token("esgf:publish")}

    def datasets() -> int:
        return int(master.search(limit=0)["response"]["numFound"])

    try:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while datasets() == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        summary = json.loads(out)
        assert summary["interrupted"] is True and summary["ok"] is False
        assert summary["failed"] == []
        published = datasets()
        total_versions = len(published_ids := summary["published"])
        assert published_ids and total_versions == published  # nothing half-sent
        assert b"run again" in err
        # every dataset version on the master is whole: all its files are there
        for doc in master.search(limit=100, fields="id,number_of_files")["response"]["docs"]:
            files = master.search(type="File", dataset_id=doc["id"], limit=0)
            assert files["response"]["numFound"] == doc["number_of_files"]
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        summary = json.loads(again.stdout)
        assert summary["ok"] is True and len(summary["unchanged"]) == published
        assert datasets() > published
    finally:
        master.stop()
