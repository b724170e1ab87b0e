"""The data node as a real server: file serving (ranges, validators, digests), hostile input,
redirects to replicas, health and metrics, access control and catalogs."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.datanode_site import ROOT, Site, make_site
from tests.servers import DataServer, logged


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with make_site(tmp_path_factory.mktemp("datanode")) as s:
        yield s


def raw_request(site: Site, target: str, extra: str = "") -> tuple[int, bytes]:
    """Send a request line exactly as written (httpx would normalise the path)."""
    host, port = site.node.host.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {site.node.host}\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_get_whole_file_with_validators_and_digest(site: Site) -> None:
    info, path = site.public.files[0], site.public.paths[0]
    with site.node.client() as c:
        r = c.get(site.url(site.public.rels[0]))
    assert r.status_code == 200
    assert r.content == path.read_bytes()
    assert int(r.headers["content-length"]) == info.size
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "application/x-netcdf"
    assert r.headers["etag"].startswith('"') and r.headers["last-modified"].endswith("GMT")
    digest = base64.b64encode(bytes.fromhex(info.checksum)).decode()
    assert r.headers["digest"] == f"SHA-256={digest}"
    assert r.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert hashlib.sha256(r.content).hexdigest() == info.checksum


def test_head_and_conditional_requests(site: Site) -> None:
    url = site.url(site.public.rels[0])
    with site.node.client() as c:
        head = c.head(url)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == site.public.files[0].size
        etag = head.headers["etag"]
        assert c.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert c.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        lm = head.headers["last-modified"]
        assert c.get(url, headers={"If-Modified-Since": lm}).status_code == 304
        # If-Range with a stale validator: the whole file, not the range
        r = c.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
        assert r.status_code == 200 and len(r.content) == site.public.files[0].size
        r = c.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert r.status_code == 206 and len(r.content) == 10


@pytest.mark.parametrize(
    ("header", "status", "span"),
    [
        ("bytes=100-199", 206, (100, 199)),
        ("bytes=1000-", 206, (1000, None)),
        ("bytes=-500", 206, (-500, None)),
        ("bytes=0-99999999999999999999", 206, (0, None)),  # a huge end is clamped
        ("bytes=99999999999999999999-", 416, None),
        ("bytes=200-100", 416, None),
        ("bytes=abc-def", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=" + "1" * 2000 + "-", 416, None),
        ("bytes=0-1,5-9", 200, None),  # multi-range: the whole file
        ("items=0-5", 200, None),  # another unit: ignored
    ],
)
def test_byte_ranges(site: Site, header: str, status: int, span: tuple | None) -> None:
    body = site.big.read_bytes()
    with site.node.client() as c:
        r = c.get(site.url("big/blob.bin"), headers={"Range": header})
    assert r.status_code == status, r.text[:200]
    if status == 206:
        assert span is not None
        start, end = span
        expected = body[start:] if end is None else body[start : end + 1]
        assert r.content == expected
        first = start % len(body)
        assert (
            r.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(body)}"
        )
        assert int(r.headers["content-length"]) == len(expected)
    elif status == 416:
        assert r.headers["content-range"] == f"bytes */{len(body)}"
        assert r.json()["status"] == 416
    else:
        assert r.content == body


def test_large_file_sendfile_and_ranges_byte_exact(site: Site) -> None:
    body = site.big.read_bytes()
    with site.node.client() as c:
        for _ in range(2):  # keep-alive reuse after a sendfile response
            r = c.get(site.url("big/blob.bin"))
            assert r.status_code == 200 and r.content == body
        r = c.get(site.url("big/blob.bin"), headers={"Range": "bytes=1048576-3145727"})
        assert r.status_code == 206 and r.content == body[1048576:3145728]
        r = c.get(site.url("big/inside.bin"))  # a symlink within the root is fine
        assert r.status_code == 200 and len(r.content) == len(body)


@pytest.mark.parametrize(
    ("target", "statuses"),
    [
        ("/thredds/fileServer/esg_dataroot/../../etc/passwd", {400, 404}),
        ("/thredds/fileServer/esg_dataroot/%2e%2e/%2e%2e/etc/passwd", {400}),
        ("/thredds/fileServer/esg_dataroot/big/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", {400}),
        ("/thredds/fileServer/esg_dataroot/big/a%00b", {400}),
        ("/thredds/fileServer/esg_dataroot/big/%0d%0aX-Injected:%20yes", {400, 404}),
        ("/thredds/fileServer/esg_dataroot/big/.hidden", {404}),
        ("/thredds/fileServer/esg_dataroot/big/escape.txt", {404}),
        ("/thredds/fileServer/esg_dataroot/big", {404}),
        ("/thredds/fileServer/esg_dataroot/big%5C..%5Cblob.bin", {400}),
        ("/thredds/fileServer/esg_dataroot//big/blob.bin", {400}),
        ("/thredds/fileServer/unknown_root/x.nc", {404}),
        ("/thredds/fileServer/", {404}),
        ("/thredds/fileServer/esg_dataroot/" + "a/" * 3000 + "x.nc", {400}),
        ("/thredds/dodsC/esg_dataroot/%2e%2e/x.nc.dds", {400}),
        ("/thredds/catalog/esg_dataroot/%2e%2e/catalog.xml", {400}),
    ],
)
def test_hostile_paths(site: Site, target: str, statuses: set[int]) -> None:
    status, data = raw_request(site, target)
    assert status in statuses, data[:300]
    assert b"outside the root" not in data and b"root:" not in data
    assert b"Traceback" not in data


def test_hostile_headers(site: Site) -> None:
    url = site.url(site.public.rels[0])
    status, _ = raw_request(site, url, "Range: " + "bytes=0-1," * 5000 + "\r\n")
    assert status in (416, 431, 400)
    with site.node.client() as c:
        for auth in ("Bearer", "Bearer garbage", "Basic dXNlcjpwYXNz", "x" * 5000):
            r = c.get(
                site.url(site.restricted.rels[0], "restricted"), headers={"Authorization": auth}
            )
            assert r.status_code == 401, r.text
        assert c.get(url, headers={"If-Modified-Since": "not a date"}).status_code == 200
        assert c.get(url, headers={"If-None-Match": "\x7f" * 100}).status_code == 200
        assert c.post(url).status_code == 405


def test_client_disconnect_mid_transfer_breaks_nothing(site: Site) -> None:
    host, port = site.node.host.split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"GET {site.url('big/blob.bin')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.recv(65536)  # headers and a little body, then hang up
    with site.node.client() as c:
        r = c.get(site.url("big/blob.bin"))
        assert r.status_code == 200 and r.content == site.big.read_bytes()
        assert c.get("/livez").status_code == 200
    assert "Traceback" not in site.node.log_path.read_text()  # type: ignore[union-attr]
    # a client hanging up is the client's business: logged as information, never as an error
    assert logged(site.node.log_path, msg="transfer aborted")
    assert logged(site.node.log_path, level="error") == []


def test_redirect_to_a_site_holding_the_file(site: Site) -> None:
    rel = site.missing.rels[0]
    with site.node.client(follow_redirects=False) as c:
        r = c.get(site.url(rel))
        assert r.status_code == 307
        target, _, query = r.headers["location"].partition("?")
        assert target == f"{site.other.url}{site.url(rel)}"
        assert query == "esgf_from=" + site.node.host.replace(":", "%3A")
        # unknown paths, DRS-shaped or not, are 404
        unknown = rel.replace("ssp585", "ssp126")
        assert c.get(site.url(unknown)).status_code == 404
        assert c.get(site.url("not/a/drs/path.nc")).status_code == 404
    with site.node.client(follow_redirects=True) as c:
        r = c.get(site.url(rel))
        assert r.status_code == 200 and r.content == site.missing.paths[0].read_bytes()


def test_no_redirect_loop_between_nodes_lacking_a_file(site: Site) -> None:
    rel = site.ghost.rels[0]
    with site.node.client(follow_redirects=False) as c:
        first = c.get(site.url(rel))
    assert first.status_code == 307 and first.headers["location"].startswith(site.other.url)
    with httpx.Client(timeout=30, follow_redirects=False) as c:
        second = c.get(first.headers["location"])
    # the other node lacks it too and knows the first node was tried: no way back
    assert second.status_code == 404, second.headers


def test_health_and_metrics(site: Site) -> None:
    with site.node.client() as c:
        assert c.get("/livez").json()["ok"] is True
        ready = c.get("/readyz")
        assert ready.status_code == 200 and set(ready.json()["roots"]) == {ROOT, "restricted"}
        c.get(site.url(site.public.rels[1]))
        text = c.get("/metrics").text
    sent = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('esgf_data_bytes_sent_total{endpoint="fileServer"}')
    ]
    assert sent and sent[0] >= site.public.files[1].size
    assert 'esgf_data_requests_total{endpoint="fileServer",status="200"}' in text


def test_readyz_reports_an_unreadable_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    node = DataServer(tmp_path / "state", {ROOT: root}).start()
    try:
        root.rename(tmp_path / "gone")
        with node.client() as c:
            r = c.get("/readyz")
        assert r.status_code == 503 and "esg_dataroot" in r.json()["problems"][0]
    finally:
        node.stop()


def test_access_control_on_restricted_root(site: Site) -> None:
    url = site.url(site.restricted.rels[0], "restricted")
    with site.node.client() as c:
        r = c.get(url)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = c.get(url, headers={"Authorization": f"Bearer {site.token('esgf:publish')}"})
        assert r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
        r = c.get(url, headers={"Authorization": f"Bearer {site.token('esgf:download')}"})
        assert r.status_code == 200 and r.content == site.restricted.paths[0].read_bytes()
        # the access check comes before the existence check: nothing leaks
        assert c.get(site.url("no/such.nc", "restricted")).status_code == 401
        assert c.get(f"/thredds/dodsC/restricted/{site.restricted.rels[0]}.dds").status_code == 401
        assert c.get(site.url(site.public.rels[0])).status_code == 200


def test_serve_data_cli_rejects_bad_settings(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from esgf_ha.cli.main import cli

    def run(*args: str):
        return CliRunner().invoke(cli, ["serve", "data", "--state-dir", str(tmp_path), *args])

    help_text = run("--help").output
    assert "Examples:" in help_text and "--root" in help_text
    bad = run("--root", "nopath")
    assert bad.exit_code == 2 and "NAME=PATH" in bad.output
    bad = run("--root", f"a={tmp_path}", "--restricted", "b")
    assert bad.exit_code == 2 and "unknown roots" in bad.output
    bad = run("--root", f"a={tmp_path}", "--restricted", "a")
    assert bad.exit_code == 2 and "token" in bad.output
    bad = run("--root", f"../x={tmp_path}")
    assert bad.exit_code == 2 and "root name" in bad.output
    conf = tmp_path / "n.conf"
    good = run("--root", f"a={tmp_path}", "--write-nginx-config", str(conf))
    assert good.exit_code == 0 and "proxy_pass http://127.0.0.1:8090;" in conf.read_text()
    bad = run(
        "--root", f"a={tmp_path}", "--listen", "127.0.0.1:0", "--write-nginx-config", str(conf)
    )
    assert bad.exit_code == 2 and "fixed port" in bad.output


_fuzz_text = st.text(alphabet=st.characters(codec="latin-1"), max_size=40)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(
        ["/thredds/fileServer/", "/thredds/dodsC/", "/thredds/catalog/", "/thredds/catalog/esgcet/"]
    ),
    path=st.lists(_fuzz_text, max_size=5),
    suffix=st.sampled_from(
        ["", ".nc", ".dds", ".dods", "/catalog.xml", ".xml", "/catalog.html", ".html"]
    ),
    query=_fuzz_text,
    range_header=st.text(
        alphabet=st.characters(codec="latin-1", blacklist_categories=("Cc",)), max_size=40
    ),
)
def test_fuzzed_requests_never_fail_on_the_server(
    site: Site, prefix: str, path: list[str], suffix: str, query: str, range_header: str
) -> None:
    target = prefix + "/".join(quote(p, safe="") for p in path) + suffix
    if query:
        target += "?" + quote(query, safe="=&[]:,")
    with site.node.client() as c:
        r = c.get(target, headers={"Range": range_header.strip().encode("latin-1")})
    assert r.status_code < 500, (target, r.text[:300])


def test_killed_node_serves_again_after_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"payload")
    node = DataServer(tmp_path / "state", {ROOT: root}).start()
    try:
        node.kill()
        node.start()
        with node.client() as c:
            assert c.get("/thredds/fileServer/esg_dataroot/f.bin").content == b"payload"
    finally:
        node.stop()


def test_event_loop_sendfile_when_no_threads_are_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    body = os.urandom(5 << 20)
    (root / "f.bin").write_bytes(body)
    monkeypatch.setenv("ESGF_HA_DATA_SENDFILE_THREADS", "0")
    node = DataServer(tmp_path / "state", {ROOT: root}).start()
    try:
        host, port = node.host.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /thredds/fileServer/esg_dataroot/f.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(65536)  # then hang up mid-transfer
        with node.client() as c:
            for _ in range(2):
                assert c.get("/thredds/fileServer/esg_dataroot/f.bin").content == body
            r = c.get("/thredds/fileServer/esg_dataroot/f.bin", headers={"Range": "bytes=7-70000"})
            assert r.status_code == 206 and r.content == body[7:70001]
        assert b"Traceback" not in node.log_path.read_bytes()  # type: ignore[union-attr]
    finally:
        node.stop()
