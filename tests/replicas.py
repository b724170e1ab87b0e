"""Helpers for replication tests: replicas as real processes, waiting, verifying."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.servers import IndexServer


def start_master(state_dir: Path, port: int | None = None) -> IndexServer:
    extra = ["--listen", f"127.0.0.1:{port}"] if port else []
    return IndexServer(state_dir, extra_args=extra).start()


def start_replica(
    state_dir: Path, upstream: IndexServer, *extra: str, timeout: float = 60.0
) -> IndexServer:
    token = upstream.token("esgf:replicate")
    args = ["--upstream", upstream.url, "--token", token, *extra]
    return IndexServer(state_dir, role="replica", extra_args=args).start(timeout=timeout)


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except httpx.HTTPError:
            last = None
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def seq_of(server: IndexServer) -> int:
    with server.client() as c:
        r = c.get("/esg-search/search", params={"limit": 0})
    return int(r.headers["X-ESGF-Index-Sequence"])


def caught_up(replica: IndexServer, master: IndexServer, timeout: float = 30.0) -> None:
    target = seq_of(master)
    wait_for(lambda: seq_of(replica) == target, timeout, f"replica at seq {target}")


def verify(master: IndexServer, replica: IndexServer) -> subprocess.CompletedProcess:
    """`esgf-ha index verify`, as an operator runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "esgf_ha",
            "index",
            "verify",
            "--master",
            master.url,
            "--replica",
            replica.url,
            "--master-token",
            master.token("esgf:replicate"),
            "--replica-token",
            replica.token("esgf:replicate"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
