"""The index node's handlers in process: what each answers to bad input, missing or wrong
credentials, readiness — statuses, bodies and challenges, without a socket."""

from __future__ import annotations

import orjson
import pytest

from esgf_ha.index.service import IndexService
from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.inprocess.conftest import AppClient, index_token

SEARCH = "/esg-search/search"


def error_of(response) -> str:
    """The message of a JSON error body, which every /api/v1 failure must carry."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body["ok"] is False and body["error"], body
    return str(body["error"])


@pytest.mark.parametrize(
    "params,status,message",
    [
        ({"bogus_field": "x"}, 400, "Invalid HTTP query parameter=bogus_field"),
        ({"project": ""}, 400, "Invalid empty value for parameter=project"),
        ({"limit": "10001"}, 400, "maximum allowed value is limit=10000"),
        ({"limit": "ten"}, 400, "not an integer"),
        ({"offset": "-1"}, 400, "must not be negative"),
        ({"offset": "99999999999999999999999"}, 400, "offset"),
        ({"format": "application/json"}, 501, "Invalid requested format"),
        ({"type": "dataset"}, 400, "Invalid value for parameter=type"),
        ({"query": "project:(CMIP6"}, 400, "parenthesis"),
        ({"bbox": "[1,2,3]"}, 400, "bbox"),
        ({"start": "not-a-date"}, 400, "start"),
    ],
)
def test_search_refuses_bad_parameters_with_their_name(
    index_app: AppClient, params: dict[str, str], status: int, message: str
) -> None:
    r = index_app.get(SEARCH, params=params)
    assert r.status_code == status, r.text
    assert message in r.text
    assert "Traceback" not in r.text


def test_a_form_body_that_is_not_utf8_is_a_400(index_app: AppClient) -> None:
    r = index_app.post(
        "/esg-search/wget",
        content=b"project=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and "UTF-8" in r.text


def test_unknown_paths_and_methods_answer_json(index_app: AppClient) -> None:
    r = index_app.get("/api/v1/nothing-here")
    assert r.status_code == 404 and error_of(r) == "no such endpoint"
    r = index_app.delete("/api/v1/publish")
    assert r.status_code == 405 and error_of(r) == "method not allowed"


def test_writes_challenge_a_missing_token_and_refuse_a_wrong_one(
    index_app: AppClient, index_service: IndexService
) -> None:
    body = orjson.dumps(as_batch(cmip6_samples(1)))
    r = index_app.post("/api/v1/publish", content=body)
    assert r.status_code == 401 and "Bearer" in error_of(r)
    assert r.headers["www-authenticate"].startswith("Bearer ")
    r = index_app.post("/api/v1/publish", content=body, headers={"Authorization": "Basic eDp5"})
    assert r.status_code == 401 and "Bearer <token>" in error_of(r)
    r = index_app.post("/api/v1/publish", content=body, headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401, r.text
    error_of(r)
    r = index_app.post(
        "/api/v1/publish", content=body, headers=index_token(index_service, "esgf:download")
    )
    assert r.status_code == 403 and "esgf:publish" in error_of(r)
    # a valid token without the scope: the challenge says which scope is missing (RFC 6750)
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    # nothing of the refused writes reached the store
    assert sum(index_service.stats().records.values()) == 0


def test_a_publication_goes_in_and_is_found(
    index_app: AppClient, index_service: IndexService
) -> None:
    samples = cmip6_samples(3)
    auth = index_token(index_service, "esgf:publish")
    r = index_app.post("/api/v1/publish", content=orjson.dumps(as_batch(samples)), headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True
    assert set(r.json()["published"]) >= {str(s.dataset["id"]) for s in samples}
    r = index_app.get(
        SEARCH, params={"format": "application/solr+json", "type": "Dataset", "fields": "id"}
    )
    assert r.status_code == 200
    assert {d["id"] for d in r.json()["response"]["docs"]} == {
        str(s.dataset["id"]) for s in samples
    }


@pytest.mark.parametrize(
    "body,message",
    [
        (b"{not json", "JSON"),
        (b"[]", "datasets"),
        (b'{"datasets": [{"dataset": {"id": 1}}]}', "datasets[0].dataset"),
    ],
)
def test_a_bad_publication_is_a_400_that_names_the_problem(
    index_app: AppClient, index_service: IndexService, body: bytes, message: str
) -> None:
    auth = index_token(index_service, "esgf:publish")
    r = index_app.post("/api/v1/publish", content=body, headers=auth)
    assert r.status_code == 400, r.text
    assert message.lower() in error_of(r).lower()
    assert sum(index_service.stats().records.values()) == 0


def test_a_publication_over_the_body_limit_is_a_413(
    index_app: AppClient, index_service: IndexService
) -> None:
    auth = index_token(index_service, "esgf:publish")
    huge = b'{"datasets": [' + b" " * (24 * 1024 * 1024 + 1) + b"]}"
    r = index_app.post("/api/v1/publish", content=huge, headers=auth)
    assert r.status_code == 413 and "larger than" in error_of(r)


def test_readiness_reports_the_store_it_serves(
    index_app: AppClient, index_service: IndexService
) -> None:
    assert index_app.get("/livez").status_code == 200
    r = index_app.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.get("ready", body.get("ok")) is True
    assert body["role"] == "master" and body["seq"] == 0
    auth = index_token(index_service, "esgf:publish")
    batch = orjson.dumps(as_batch(cmip6_samples(1)))
    assert index_app.post("/api/v1/publish", content=batch, headers=auth).status_code == 200
    assert index_app.get("/readyz").json()["seq"] == index_service.seq > 0


@pytest.mark.parametrize(
    "query,message",
    [
        ("since=abc", "since"),
        ("since=-1", "since"),
        ("limit=99999999", "limit"),
        ("wait=soon", "wait must be a number"),
        ("wait=100000", "wait must be between"),
        ("encoding=gzip", "encoding must be json or zlib"),
    ],
)
def test_the_change_feed_refuses_bad_parameters(
    index_app: AppClient, index_service: IndexService, query: str, message: str
) -> None:
    auth = index_token(index_service, "esgf:replicate")
    r = index_app.get(f"/api/v1/changes?{query}", headers=auth)
    assert r.status_code == 400, r.text
    assert message in error_of(r)


@pytest.mark.parametrize(
    "body,message",
    [
        ({}, "core"),
        ({"core": "Dataset"}, "ranges must be a list"),
        ({"core": "Dataset", "ranges": [[1, None]]}, "string or null"),
        ({"core": "File", "split": ["", None, 1]}, "parts must be between 2 and 256"),
        ({"core": "File", "split": "all"}, "split must be"),
    ],
)
def test_the_digest_refuses_malformed_requests(
    index_app: AppClient, index_service: IndexService, body: dict, message: str
) -> None:
    auth = index_token(index_service, "esgf:replicate")
    r = index_app.post("/api/v1/digest", content=orjson.dumps(body), headers=auth)
    assert r.status_code == 400, r.text
    assert message in error_of(r)


def test_replication_endpoints_want_the_replicate_scope(
    index_app: AppClient, index_service: IndexService
) -> None:
    assert index_app.get("/api/v1/changes").status_code == 401
    r = index_app.get("/api/v1/changes", headers=index_token(index_service, "esgf:publish"))
    assert r.status_code == 403 and "esgf:replicate" in error_of(r)
    r = index_app.get("/api/v1/changes", headers=index_token(index_service, "esgf:replicate"))
    assert r.status_code == 200, r.text
