"""Fixtures of the in-process tier: the real app factories, driven through starlette's
httpx's ASGI transport (no socket, no subprocess), for handler-level behaviour.

Each app is built the way `esgf-ha serve` builds it, from a settings object and the real
service on a tmp dir; only the network is left out. The real-process tests elsewhere in
tests/ still own everything a socket, a signal or a second process is needed for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from cryptography.hazmat.primitives import serialization
from starlette.types import ASGIApp

from esgf_ha.common.auth import TokenVerifier, issue_token, load_or_create_signing_key
from esgf_ha.datanode.app import create_app as create_data_app
from esgf_ha.datanode.service import DataNode
from esgf_ha.datanode.settings import DataSettings
from esgf_ha.index.app import create_app as create_index_app
from esgf_ha.index.service import IndexService
from esgf_ha.index.settings import IndexSettings

# every request is bounded: a handler that hangs fails its test instead of the whole run
TIMEOUT = httpx.Timeout(30.0)


class AppClient:
    """Synchronous requests to an ASGI app over httpx's ASGI transport, run on an event loop
    in a worker thread (the way a server would run it), so tests stay plain functions.

    A handler's unexpected exception comes back as the 500 a client would see
    (raise_app_exceptions=False), so a test can assert there is none."""

    def __init__(self, app: ASGIApp, portal: BlockingPortal) -> None:
        self.portal = portal
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=TIMEOUT
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self.portal.call(self.client.aclose)


def app_client(app: ASGIApp) -> Iterator[AppClient]:
    with start_blocking_portal() as portal:
        client = AppClient(app, portal)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture
def index_service(tmp_path: Path) -> Iterator[IndexService]:
    """An empty index store on a tmp dir, closed after the test."""
    service = IndexService.open(tmp_path / "index")
    yield service
    service.close()


@pytest.fixture
def index_app(index_service: IndexService, tmp_path: Path) -> Iterator[AppClient]:
    state_dir = tmp_path / "index"
    settings = IndexSettings(state_dir=state_dir, listen="127.0.0.1:0")
    app = create_index_app(settings, index_service, TokenVerifier.from_state_dir(state_dir))
    yield from app_client(app)


def index_token(index_service: IndexService, *scopes: str) -> dict[str, str]:
    """An Authorization header with a token the index signs for itself."""
    token = issue_token(index_service.state_dir, list(scopes), subject="inprocess")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """Two roots, one open and one restricted, with one small file each."""
    for root in ("open", "restricted"):
        folder = tmp_path / "data" / root / "CMIP6" / "x"
        folder.mkdir(parents=True)
        (folder / "a.nc").write_bytes(bytes(range(256)) * 4)
    return tmp_path / "data"


@pytest.fixture
def data_keys(tmp_path: Path) -> Path:
    """The federation's token key: the data node gets only its public half."""
    key = load_or_create_signing_key(tmp_path / "issuer")
    pem = tmp_path / "issuer.pub.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return tmp_path / "issuer"


@pytest.fixture
def data_settings(tmp_path: Path, data_root: Path, data_keys: Path) -> DataSettings:
    return DataSettings(
        state_dir=tmp_path / "datanode",
        listen="127.0.0.1:0",
        roots={"esg_dataroot": data_root / "open", "restricted": data_root / "restricted"},
        restricted=["restricted"],
        token_public_keys=[tmp_path / "issuer.pub.pem"],
    )


@pytest.fixture
def data_app(data_settings: DataSettings) -> Iterator[AppClient]:
    from esgf_ha.datanode.tokens import verifier_for

    app = create_data_app(DataNode(data_settings, None), verifier_for(data_settings))
    yield from app_client(app)


def data_token(issuer_dir: Path, *scopes: str) -> dict[str, str]:
    token = issue_token(issuer_dir, list(scopes), subject="inprocess")
    return {"Authorization": f"Bearer {token}"}
