"""The data node's handlers in process: files and ranges, path checks, the token challenge
of a restricted root and readiness — statuses, bodies and headers, without a socket."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.inprocess.conftest import AppClient, data_token

FILE = "/thredds/fileServer/esg_dataroot/CMIP6/x/a.nc"
RESTRICTED = "/thredds/fileServer/restricted/CMIP6/x/a.nc"
CONTENT = bytes(range(256)) * 4


def error_of(response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body["ok"] is False and body["status"] == response.status_code and body["error"]
    return str(body["error"])


def test_a_file_whole_and_in_ranges(data_app: AppClient) -> None:
    r = data_app.get(FILE)
    assert r.status_code == 200 and r.content == CONTENT
    assert r.headers["content-type"] == "application/x-netcdf"
    r = data_app.get(FILE, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == CONTENT[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(CONTENT)}"
    r = data_app.get(FILE, headers={"Range": f"bytes={len(CONTENT)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(CONTENT)}"
    error_of(r)


@pytest.mark.parametrize(
    "path",
    [
        "/thredds/fileServer/esg_dataroot/CMIP6/x/missing.nc",
        "/thredds/fileServer/no_such_root/CMIP6/x/a.nc",
        "/thredds/fileServer/esg_dataroot/%2e%2e/restricted/CMIP6/x/a.nc",
        "/thredds/fileServer/esg_dataroot/CMIP6/x/..%2F..%2F..%2Frestricted/CMIP6/x/a.nc",
        "/thredds/fileServer/esg_dataroot/CMIP6/x",
    ],
)
def test_what_is_no_file_under_a_root_is_never_served(data_app: AppClient, path: str) -> None:
    r = data_app.get(path)
    assert r.status_code in (400, 403, 404), r.text
    assert r.content != CONTENT
    error_of(r)


def test_unknown_paths_and_methods_answer_json(data_app: AppClient) -> None:
    r = data_app.get("/nothing-here")
    assert r.status_code == 404 and error_of(r) == "no such endpoint"
    r = data_app.post(FILE)
    assert r.status_code == 405 and error_of(r) == "method not allowed"


def test_a_restricted_root_challenges_then_serves(data_app: AppClient, data_keys: Path) -> None:
    r = data_app.get(RESTRICTED)
    assert r.status_code == 401
    error_of(r)
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'scope="esgf:download"' in challenge
    assert "error=" not in challenge  # no credentials sent: nothing was invalid yet
    r = data_app.get(RESTRICTED, headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = data_app.get(RESTRICTED, headers=data_token(data_keys, "esgf:publish"))
    assert r.status_code == 403 and "esgf:download" in error_of(r)
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    r = data_app.get(RESTRICTED, headers=data_token(data_keys, "esgf:download"))
    assert r.status_code == 200 and r.content == CONTENT
    # the open root asks for nothing
    assert data_app.get(FILE).status_code == 200


def test_readiness_names_the_root_that_is_gone(data_app: AppClient, data_root: Path) -> None:
    assert data_app.get("/livez").status_code == 200
    r = data_app.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.get("ready", body.get("ok")) is True
    shutil.rmtree(data_root / "restricted")
    r = data_app.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body.get("ready", body.get("ok")) is False
    assert "restricted" in str(body)
