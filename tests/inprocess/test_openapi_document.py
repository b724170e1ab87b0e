"""The served `/openapi.json` is the parameters the handlers read: every parameter and bound
it names is one a request is held to, and every named search parameter is in it."""

from __future__ import annotations

import pytest

from esgf_ha.index.http.replication import CHANGES_PARAMS
from esgf_ha.index.params import CORE_QUERY_FIELDS, KEYWORDS, SEARCH_PARAMS
from esgf_ha.index.service import IndexService
from tests.inprocess.conftest import AppClient, index_token


def _operation(doc: dict, path: str, method: str = "get") -> dict:
    return doc["paths"][path][method]


def _bounded(op: dict) -> list[tuple[str, dict]]:
    params = op["parameters"]
    return [(p["name"], p["schema"]) for p in params if "maximum" in p["schema"]]


def test_every_named_search_parameter_is_documented_and_accepted(index_app: AppClient) -> None:
    doc = index_app.get("/openapi.json").json()
    names = {p["name"] for p in _operation(doc, "/esg-search/search")["parameters"]}
    assert set(SEARCH_PARAMS) <= names
    # a documented name the parser did not know would be refused as an invalid parameter
    assert set(SEARCH_PARAMS) <= KEYWORDS | CORE_QUERY_FIELDS
    for name in sorted(SEARCH_PARAMS):
        r = index_app.get("/esg-search/search", params={name: "x"})
        assert "Invalid HTTP query parameter" not in r.text, name


def test_the_search_holds_requests_to_the_documented_bounds(index_app: AppClient) -> None:
    doc = index_app.get("/openapi.json").json()
    op = _operation(doc, "/esg-search/search")
    bounded = _bounded(op)
    assert {name for name, _ in bounded} == {"offset", "limit"}
    for name, schema in bounded:
        top = int(schema["maximum"])
        at_top = {name: top} if name == "limit" else {name: top, "limit": 0}
        assert index_app.get("/esg-search/search", params=at_top).status_code == 200
        over = index_app.get("/esg-search/search", params={name: top + 1})
        assert over.status_code == 400, (name, over.text)
    choices = {p["name"]: p["schema"].get("enum") for p in op["parameters"]}
    for fmt in choices["format"]:
        assert index_app.get("/esg-search/search", params={"format": fmt}).status_code == 200
    assert index_app.get("/esg-search/search", params={"format": "text/csv"}).status_code == 501
    for core in choices["type"]:
        assert index_app.get("/esg-search/search", params={"type": core}).status_code == 200


def test_the_change_feed_holds_requests_to_the_documented_bounds(
    index_app: AppClient, index_service: IndexService
) -> None:
    doc = index_app.get("/openapi.json").json()
    op = _operation(doc, "/api/v1/changes")
    assert [p["name"] for p in op["parameters"]] == [p.name for p in CHANGES_PARAMS]
    auth = index_token(index_service, "esgf:replicate")
    for name, schema in _bounded(op):
        top = schema["maximum"]
        at_top = {name: top, "limit": 0} if name == "wait" else {name: top}
        assert index_app.get("/api/v1/changes", params=at_top, headers=auth).status_code == 200
        r = index_app.get("/api/v1/changes", params={name: top + 1}, headers=auth)
        assert r.status_code == 400 and name in r.json()["error"], (name, r.text)
        r = index_app.get("/api/v1/changes", params={name: -1}, headers=auth)
        assert r.status_code == 400, (name, r.text)
    encodings = next(p for p in op["parameters"] if p["name"] == "encoding")["schema"]["enum"]
    for encoding in encodings:
        r = index_app.get("/api/v1/changes", params={"encoding": encoding}, headers=auth)
        assert r.status_code == 200
    bad = index_app.get("/api/v1/changes", params={"encoding": "gzip"}, headers=auth)
    assert bad.status_code == 400


@pytest.mark.parametrize("path", ["/api/v1/retract", "/api/v1/delete", "/api/v1/digest"])
def test_a_body_without_its_required_properties_is_a_400(
    index_app: AppClient, index_service: IndexService, path: str
) -> None:
    doc = index_app.get("/openapi.json").json()
    body = _operation(doc, path, "post")["requestBody"]["content"]["application/json"]
    required = body["schema"]["required"]
    assert required
    scopes = ("esgf:replicate",) if path.endswith("digest") else ("esgf:publish",)
    r = index_app.post(path, json={}, headers=index_token(index_service, *scopes))
    assert r.status_code == 400
    assert any(name in r.json()["error"] for name in required), r.text
