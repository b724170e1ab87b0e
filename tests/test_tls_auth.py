"""HTTPS and the legacy X.509 client-certificate path for /ws/* publishing."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from esgf_ha.common.tls import issue_client_cert
from esgf_ha.records.samples import cmip6_samples
from tests.servers import IndexServer


def _doc_xml(record: dict) -> bytes:
    parts = ["<doc>"]
    for name, value in record.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f'<field name="{name}">{v}</field>')
    return ("".join(parts) + "</doc>").encode()


@pytest.fixture
def tls_server(tmp_path: Path):
    server = IndexServer(tmp_path / "master", tls=True).start()
    yield server
    server.stop()


def _client(server: IndexServer, cert: Path | None = None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert))
    return httpx.Client(base_url=server.url, verify=ctx, timeout=30)


def test_https_and_client_certificate_publishing(tls_server: IndexServer, tmp_path: Path) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    record = cmip6_samples(1, seed=61)[0].dataset
    with _client(tls_server) as anonymous:
        assert anonymous.get("/esg-search/search").status_code == 200
        r = anonymous.post("/esg-search/ws/publish", content=_doc_xml(record))
        assert r.status_code == 401
    cert = issue_client_cert(tls_server.state_dir, "publisher.example.org", tmp_path / "cred.pem")
    with _client(tls_server, cert) as publisher:
        r = publisher.post("/esg-search/ws/publish", content=_doc_xml(record))
        assert r.status_code == 200, r.text
    assert tls_server.search(id=record["id"])["response"]["numFound"] == 1


def test_certificate_from_another_ca_is_refused(tls_server: IndexServer, tmp_path: Path) -> None:
    other = IndexServer(tmp_path / "other", tls=True).start()  # makes a second, unrelated CA
    other.stop()
    stranger = issue_client_cert(other.state_dir, "stranger", tmp_path / "stranger.pem")
    with pytest.raises(httpx.HTTPError), _client(tls_server, stranger) as c:
        c.post("/esg-search/ws/publish", content=b"<doc/>")
    assert tls_server.search(limit=0)["response"]["numFound"] == 0


def test_anonymous_ws_only_from_trusted_networks(tmp_path: Path) -> None:
    record = cmip6_samples(1, seed=62)[0].dataset
    trusted = IndexServer(tmp_path / "a", extra_args=["--ws-anonymous-from", "127.0.0.0/8"]).start()
    untrusted = IndexServer(
        tmp_path / "b", extra_args=["--ws-anonymous-from", "10.0.0.0/8"]
    ).start()
    try:
        with trusted.client() as c:
            assert c.post("/esg-search/ws/publish", content=_doc_xml(record)).status_code == 200
            # our own JSON API still needs a token
            assert c.post("/api/v1/retract", json={"ids": [record["id"]]}).status_code == 401
        with untrusted.client() as c:
            assert c.post("/esg-search/ws/publish", content=_doc_xml(record)).status_code == 401
    finally:
        trusted.stop()
        untrusted.stop()
