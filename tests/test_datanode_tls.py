"""The data node over HTTPS: byte-exact files (the non-sendfile path), and the real esgpull
downloading from it with our CA bundle and verifying checksums."""

from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.datanode_data import DrsDataset, batch_for, write_dataset
from tests.servers import DataServer, IndexServer

ROOT_DIR = Path(__file__).resolve().parents[1]
ESGPULL = ROOT_DIR / ".venv-clients" / "esgpull" / "bin" / "python"


@dataclass
class TlsSite:
    index: IndexServer
    node: DataServer
    datasets: list[DrsDataset]
    big: Path


def _index_searches(index: IndexServer) -> float:
    with index.client() as c:
        text = c.get("/metrics").text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("esgf_http_requests_total{") and "search" in line
    )


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSite]:
    base = tmp_path_factory.mktemp("datanode-tls")
    root = base / "data"
    datasets = [write_dataset(root, seed=7), write_dataset(root, seed=8, variable_id="pr")]
    big = root / "big.bin"
    big.write_bytes(os.urandom(24 << 20))
    index = IndexServer(base / "index").start()
    # records for many datasets the node will never be asked about
    filler = [
        write_dataset(base / "filler", seed=20 + i, source_id="FILLER", member_id=f"r{i}i1p1f1")
        for i in range(30)
    ]
    assert index.publish(batch_for(filler, "127.0.0.1:9", "http://127.0.0.1:9")).status_code == 200
    searches_before = _index_searches(index)
    began = time.monotonic()
    node = DataServer(base / "node", {"esg_dataroot": root}, index_url=index.url, tls=True)
    node.start()
    node.startup_seconds = time.monotonic() - began  # type: ignore[attr-defined]
    node.searches_at_start = _index_searches(index) - searches_before  # type: ignore[attr-defined]
    assert index.publish(batch_for(datasets, node.host, node.url)).status_code == 200
    try:
        yield TlsSite(index, node, datasets, big)
    finally:
        node.stop()
        index.stop()


def test_https_serves_exact_bytes_and_ranges(tls_site: TlsSite) -> None:
    body = tls_site.big.read_bytes()
    assert tls_site.node.url.startswith("https://")
    with tls_site.node.client() as c:
        r = c.get("/thredds/fileServer/esg_dataroot/big.bin")
        assert r.status_code == 200 and r.content == body
        r = c.get("/thredds/fileServer/esg_dataroot/big.bin", headers={"Range": "bytes=5-1048580"})
        assert r.status_code == 206 and r.content == body[5:1048581]


def _bytes_sent(node: DataServer) -> float:
    with node.client() as c:
        text = c.get("/metrics").text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('esgf_data_bytes_sent_total{endpoint="fileServer"}')
    )


def test_https_client_leaving_mid_transfer_stops_the_reads(tls_site: TlsSite) -> None:
    node = tls_site.node
    host, port = node.host.split(":")
    context = ssl.create_default_context(cafile=str(node.ca))
    before = _bytes_sent(node)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as s,
    ):
        s.sendall(b"GET /thredds/fileServer/esg_dataroot/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(65536)
    time.sleep(1.0)
    assert _bytes_sent(node) - before < tls_site.big.stat().st_size
    with node.client() as c:
        r = c.get("/thredds/fileServer/esg_dataroot/big.bin", headers={"Range": "bytes=0-99"})
        assert r.status_code == 206 and r.content == tls_site.big.read_bytes()[:100]
    assert b"Traceback" not in node.log_path.read_bytes()  # type: ignore[union-attr]


def test_ready_quickly_without_catalog_building(tls_site: TlsSite) -> None:
    # the node asks the index nothing before it is ready, so its start-up does not grow with
    # the number of published datasets; the time (process start to /readyz 200, certificate
    # generation included) is bounded loosely because the test machine is shared
    assert tls_site.node.searches_at_start == 0  # type: ignore[attr-defined]
    assert tls_site.node.startup_seconds < 5.0  # type: ignore[attr-defined]
    before = _index_searches(tls_site.index)
    with tls_site.node.client() as c:
        r = c.get(f"/thredds/fileServer/esg_dataroot/{tls_site.datasets[1].rels[1]}")
    assert r.status_code == 200 and "digest" in r.headers
    assert _index_searches(tls_site.index) > before  # asked on demand, on the first request


@pytest.mark.clients
def test_esgpull_downloads_over_https_and_verifies(tls_site: TlsSite, tmp_path: Path) -> None:
    if not ESGPULL.exists() or not (ESGPULL.parents[1] / ".requirements.stamp").exists():
        pytest.fail("the esgpull client venv is missing: run `make clients-setup`", pytrace=False)
    cmd = [
        str(ESGPULL),
        str(ROOT_DIR / "tests" / "clients" / "drive_esgpull_download.py"),
        tls_site.index.url,
        "--workdir",
        str(tmp_path),
        "--selection",
        json.dumps({"project": "CMIP6", "source_id": "MRI-ESM2-0"}),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["SSL_CERT_FILE"] = str(tls_site.node.ca)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"{shlex.join(cmd)}\n{proc.stderr[-3000:]}"
    out = json.loads(lines[-1])
    assert "error" not in out, out
    expected = {
        f"{d.instance_id}.{f.name}": (f, p)
        for d in tls_site.datasets
        for f, p in zip(d.files, d.paths, strict=True)
    }
    got = {f["file_id"]: f for f in out["files"]}
    assert set(got) == set(expected)
    for file_id, (info, path) in expected.items():
        doc = got[file_id]
        assert doc["status"] == "ok", doc
        assert doc["url"].startswith(tls_site.node.url)
        assert Path(doc["local_path"]).read_bytes() == path.read_bytes()
        assert doc["checksum"] == info.checksum
