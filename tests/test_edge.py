"""The edge every service shares (common/edge.py), checked on the real index, data node and
DNS service: one readiness shape, one JSON error body for unknown paths and methods, one
bearer challenge, every metric under one prefix."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from esgf_ha.common.edge import LEGACY_NAMES, PREFIX
from tests.balancer import Balancer, write_config
from tests.servers import DataServer, IndexServer

COMMON = {"ok", "ready", "status", "service", "version", "reason", "problems"}
LEGACY = {old for names in LEGACY_NAMES.values() for old in names.values()}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("edge")
    for name in ("open", "closed"):
        (tmp / name).mkdir()
    (tmp / "closed" / "a.nc").write_bytes(b"x" * 10)
    index = IndexServer(tmp / "index").start()
    key = index.state_dir / "keys" / "token-signing.pub.pem"
    data = DataServer(
        tmp / "data",
        {"open": tmp / "open", "closed": tmp / "closed"},
        extra_args=["--restricted", "closed", "--token-public-key", str(key)],
    )
    config = write_config(
        tmp / "federation.yaml",
        {
            "state_dir": str(tmp / "state"),
            "sites": [
                {
                    "name": "site0",
                    "address": "127.0.0.1",
                    "index_port": httpx.URL(index.url).port,
                    "data_port": None,
                }
            ],
            "dns": {"zone": "esgf.test", "address": "127.0.0.1", "port": 0, "ttl": 1},
            "health": {"interval": 0.25, "timeout": 0.5, "failures": 2, "recoveries": 1},
        },
    )
    balancer = Balancer(config, tmp / "dns")
    try:
        data.start()
        balancer.start()
        yield {"index": index.url, "data": data.url, "dns": balancer.url}
    finally:
        balancer.stop()
        data.stop()
        index.stop()


@pytest.mark.parametrize("service", ["index", "data", "dns"])
def test_readiness_has_one_shape(services: dict[str, str], service: str) -> None:
    r = httpx.get(services[service] + "/readyz", timeout=10)
    body = r.json()
    assert r.status_code == 200 and set(body) >= COMMON, body
    assert body["service"] == service and body["ready"] is body["ok"] is True
    assert body["status"] == 200 and body["reason"] is None and body["problems"] == []


@pytest.mark.parametrize("service", ["index", "data", "dns"])
def test_unknown_paths_and_methods_answer_the_json_error_body(
    services: dict[str, str], service: str
) -> None:
    with httpx.Client(base_url=services[service], timeout=10) as c:
        missing = c.get("/no/such/path")
        wrong = c.post("/livez", content=b"{}")
    assert missing.status_code == 404
    assert missing.json() == {"ok": False, "status": 404, "error": "no such endpoint"}
    assert wrong.status_code == 405
    assert wrong.json() == {"ok": False, "status": 405, "error": "method not allowed"}


@pytest.mark.parametrize("service", ["index", "data", "dns"])
def test_every_metric_has_the_prefix(services: dict[str, str], service: str) -> None:
    with httpx.Client(base_url=services[service], timeout=10) as c:
        c.get("/readyz")
        text = c.get("/metrics").text
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert f"{PREFIX}http_requests_total" in names
    assert f"{PREFIX}http_request_seconds_bucket" in names
    # anything else is a deprecated alias of a renamed metric, listed in LEGACY_NAMES
    stray = {n for n in names if not n.startswith(PREFIX)}
    assert {n for n in stray if not any(n.startswith(old) for old in LEGACY)} == set()


def test_the_bearer_challenge_names_realm_and_scope(services: dict[str, str]) -> None:
    feed = httpx.get(services["index"] + "/api/v1/changes", timeout=10)
    assert feed.status_code == 401
    assert feed.headers["www-authenticate"] == 'Bearer realm="esgf-ha", scope="esgf:replicate"'
    bad = httpx.get(
        services["data"] + "/thredds/fileServer/closed/a.nc",
        headers={"Authorization": "Bearer not-a-token"},
        timeout=10,
    )
    assert bad.status_code == 401 and bad.json()["status"] == 401
    assert bad.headers["www-authenticate"] == (
        'Bearer realm="esgf-ha", error="invalid_token", scope="esgf:download"'
    )


def test_a_stopping_service_answers_the_same_readiness_shape(tmp_path: Path) -> None:
    index = IndexServer(tmp_path / "index", extra_args=["--drain-seconds", "5"]).start()
    try:
        assert index.proc is not None
        os.kill(index.proc.pid, signal.SIGTERM)
        r = httpx.get(index.url + "/readyz", timeout=10)
        body = r.json()
        assert r.status_code == 503 and set(body) >= COMMON
        assert body["reason"] == "shutting down" and body["service"] == "index"
        assert body["ready"] is False and body["problems"] == ["shutting down"]
    finally:
        index.kill()
