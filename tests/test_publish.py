"""Publication on the master: atomic batches, versions and `latest`, retraction, deletion,
the esgcet `/ws/*` protocol, authentication, and bad input that must change nothing."""

from __future__ import annotations

import copy

import orjson
import pytest

from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.servers import IndexServer


def one_dataset(seed: int = 5, version: str | None = None) -> dict:
    sample = cmip6_samples(1, seed=seed)[0]
    entry = {"dataset": sample.dataset, "files": sample.files}
    if version:
        entry = bump_version(entry, version)
    return {"datasets": [entry]}


def bump_version(entry: dict, version: str) -> dict:
    """The same dataset at another version (ids, urls and paths follow)."""
    entry = copy.deepcopy(entry)
    old = entry["dataset"]["version"]
    blob = orjson.dumps(entry).decode()
    blob = blob.replace(f".v{old}", f".v{version}").replace(f"/v{old}/", f"/v{version}/")
    entry = orjson.loads(blob)
    entry["dataset"]["version"] = version
    for f in entry["files"]:
        f["version"] = version
    return entry


def counts(server: IndexServer) -> tuple[int, int]:
    return (
        server.search(type="Dataset", limit=0)["response"]["numFound"],
        server.search(type="File", limit=0)["response"]["numFound"],
    )


def test_publish_then_search(index_server: IndexServer) -> None:
    batch = one_dataset()
    r = index_server.publish(batch)
    assert r.status_code == 200, r.text
    dataset_id = batch["datasets"][0]["dataset"]["id"]
    assert r.json()["published"] == [dataset_id]
    docs = index_server.search(id=dataset_id)["response"]["docs"]
    assert len(docs) == 1 and docs[0]["latest"] is True
    files = index_server.search(type="File", dataset_id=dataset_id)["response"]["docs"]
    assert {f["id"] for f in files} == {f["id"] for f in batch["datasets"][0]["files"]}
    # republishing the same version unchanged is a no-op
    again = index_server.publish(batch)
    assert again.status_code == 200 and again.json()["unchanged"] == [dataset_id]
    assert counts(index_server) == (1, len(files))


def test_new_version_flips_latest_and_old_version_never_demotes(index_server: IndexServer) -> None:
    v1 = one_dataset(version="20190101")
    v2 = {"datasets": [bump_version(v1["datasets"][0], "20200101")]}
    v0 = {"datasets": [bump_version(v1["datasets"][0], "20180101")]}
    for batch in (v1, v2, v0):
        assert index_server.publish(batch).status_code == 200
    master_id = v1["datasets"][0]["dataset"]["master_id"]
    docs = index_server.search(master_id=master_id, limit=10)["response"]["docs"]
    latest = {d["version"]: d["latest"] for d in docs}
    assert latest == {"20190101": False, "20200101": True, "20180101": False}
    old_files = index_server.search(type="File", dataset_id=v1["datasets"][0]["dataset"]["id"])
    assert all(f["latest"] is False for f in old_files["response"]["docs"])
    new = index_server.search(latest="true", master_id=master_id)["response"]["docs"]
    assert [d["version"] for d in new] == ["20200101"]


def test_republish_with_other_checksums_is_refused(index_server: IndexServer) -> None:
    batch = one_dataset()
    assert index_server.publish(batch).status_code == 200
    changed = copy.deepcopy(batch)
    changed["datasets"][0]["files"][0]["checksum"] = ["0" * 64]
    r = index_server.publish(changed)
    assert r.status_code == 409 and "new version" in r.json()["error"]
    doc = index_server.search(type="File", id=batch["datasets"][0]["files"][0]["id"])
    assert doc["response"]["docs"][0]["checksum"] == batch["datasets"][0]["files"][0]["checksum"]


def test_a_bad_batch_changes_nothing(index_server: IndexServer) -> None:
    good = cmip6_samples(3, seed=11)
    batch = as_batch(good)
    batch["datasets"][2]["files"][1]["size"] = "not-a-number"
    r = index_server.publish(batch)
    assert r.status_code == 400 and "size" in r.json()["error"]
    assert counts(index_server) == (0, 0)
    with index_server.client() as c:
        assert int(c.get("/readyz").headers["X-ESGF-Index-Sequence"]) == 0


@pytest.mark.parametrize(
    "body,fragment",
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "datasets"),
        (b'{"datasets": [{"files": []}]}', "dataset"),
        (b'{"datasets": [{"dataset": {"id": "x", "type": "Dataset"}}]}', "mandatory field"),
        (
            b'{"datasets": [{"dataset": {"id": "x|dn", "type": "Dataset", "data_node": "dn",'
            b' "index_node": "in", "project": "CMIP6", "url": ["a|b"]}}]}',
            "URL|MIME|SERVICE",
        ),
    ],
)
def test_malformed_batches_get_400(index_server: IndexServer, body: bytes, fragment: str) -> None:
    with index_server.client() as c:
        r = c.post("/api/v1/publish", content=body, headers=index_server.auth())
    assert r.status_code == 400 and fragment in r.json()["error"]


def test_auth_is_required_for_writes(index_server: IndexServer) -> None:
    body = orjson.dumps(one_dataset())
    with index_server.client() as c:
        r = c.post("/api/v1/publish", content=body)
        assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"]
        r = c.post("/api/v1/publish", content=body, headers={"Authorization": "Bearer abc.def.ghi"})
        assert r.status_code == 401
        r = c.post("/api/v1/publish", content=body, headers=index_server.auth("esgf:download"))
        assert r.status_code == 403
        r = c.post("/esg-search/ws/retract", data={"id": "x"})
        assert r.status_code == 401 and 'status="error"' in r.text
    assert counts(index_server) == (0, 0)


def test_oversize_body_gets_413(index_server: IndexServer) -> None:
    with index_server.client() as c:
        r = c.post(
            "/api/v1/publish", content=b" " * (65 * 1024 * 1024), headers=index_server.auth()
        )
    assert r.status_code == 413


def test_retract_and_delete(index_server: IndexServer) -> None:
    a, b = cmip6_samples(2, seed=21)
    assert index_server.publish(as_batch([a, b])).status_code == 200
    a_id, b_id = a.dataset["id"], b.dataset["id"]
    with index_server.client() as c:
        r = c.post("/api/v1/retract", json={"ids": [a_id]}, headers=index_server.auth())
        assert r.status_code == 200 and r.json()["retracted"] == [a_id]
    doc = index_server.search(id=a_id)["response"]["docs"][0]
    assert doc["retracted"] is True and doc["latest"] is False
    assert index_server.search(type="File", dataset_id=a_id)["response"]["numFound"] == 0
    assert a_id not in {d["id"] for d in index_server.search(latest="true")["response"]["docs"]}
    assert index_server.search(retracted="true")["response"]["numFound"] == 1
    # a retracted version cannot come back
    assert index_server.publish(as_batch([a])).status_code == 409
    with index_server.client() as c:
        r = c.post("/api/v1/delete", json={"ids": [b_id]}, headers=index_server.auth())
        assert r.status_code == 200
        assert (
            c.post(
                "/api/v1/delete", json={"ids": ["nope"]}, headers=index_server.auth()
            ).status_code
            == 404
        )
    assert index_server.search(id=b_id)["response"]["numFound"] == 0
    assert index_server.search(type="File", dataset_id=b_id)["response"]["numFound"] == 0


def _doc_xml(record: dict) -> bytes:
    parts = ["<doc>"]
    for name, value in record.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f'<field name="{name}">{v}</field>')
    parts.append("</doc>")
    return "".join(parts).encode()


def test_esgcet_ws_protocol(index_server: IndexServer) -> None:
    """The requests esgcet 5.5.3 sends: files then dataset to /ws/publish, /ws/update to
    supersede, form-encoded /ws/retract and /ws/delete."""
    sample = cmip6_samples(1, seed=31)[0]
    auth = index_server.auth()
    with index_server.client() as c:
        for rec in [*sample.files, sample.dataset]:
            r = c.post("/esg-search/ws/publish", content=_doc_xml(rec), headers=auth)
            assert r.status_code == 200 and "Published record: " in r.text
        ds_id = sample.dataset["id"]
        assert index_server.search(id=ds_id)["response"]["numFound"] == 1
        update = (
            '<updates core="datasets" action="set"><update><query>id=' + ds_id + "</query>"
            '<field name="latest"><value>false</value></field></update></updates>'
        ).encode()
        r = c.post("/esg-search/ws/update", content=update, headers=auth)
        assert r.status_code == 200 and "Number of records updated: 1" in r.text
        assert index_server.search(id=ds_id)["response"]["docs"][0]["latest"] is False
        r = c.post("/esg-search/ws/retract/", data={"id": ds_id}, headers=auth)
        assert r.status_code == 200 and f"Retracted id: {ds_id}" in r.text
        r = c.post("/esg-search/ws/delete", data={"id": ds_id}, headers=auth)
        assert r.status_code == 200
        other = cmip6_samples(1, seed=32)[0].dataset
        assert (
            c.post("/esg-search/ws/publish", content=_doc_xml(other), headers=auth).status_code
            == 200
        )
        r = c.post("/esg-search/ws/unpublish", content=_doc_xml({"id": other["id"]}), headers=auth)
        assert (
            r.status_code == 200
            and f"<message>Unpublished record: {other['id']}</message>" in r.text
        )
        assert c.get("/esg-search/ws/ping").text == "ESGF REST Publishing Service"
    assert counts(index_server) == (0, 0)


@pytest.mark.parametrize(
    "body,fragment",
    [
        (b"", "empty"),
        (b"<doc><field name='id'>a & b</field></doc>", "invalid XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "y">]><doc><field name="id">&x;</field></doc>',
            "refused",
        ),
        (b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><doc>&x;</doc>', "refused"),
        (b"<doc><field>x</field></doc>", "name"),
        (
            b"<doc><field name='id'>x|dn</field><field name='type'>Dataset</field></doc>",
            "mandatory",
        ),
    ],
)
def test_hostile_or_malformed_xml_gets_400(
    index_server: IndexServer, body: bytes, fragment: str
) -> None:
    with index_server.client() as c:
        r = c.post("/esg-search/ws/publish", content=body, headers=index_server.auth())
    assert r.status_code == 400, r.text
    assert fragment in r.text and 'status="error"' in r.text
    assert counts(index_server) == (0, 0)


def test_store_survives_kill_and_restart(index_server: IndexServer) -> None:
    batch = as_batch(cmip6_samples(5, seed=41))
    assert index_server.publish(batch).status_code == 200
    before = index_server.search(facets="source_id", limit=0)
    index_server.kill()
    index_server.start()
    after = index_server.search(facets="source_id", limit=0)
    assert after["response"]["numFound"] == before["response"]["numFound"] > 0
    assert after["facet_counts"] == before["facet_counts"]


def test_files_inherit_dataset_facets(index_server: IndexServer) -> None:
    batch = one_dataset(seed=51)
    entry = batch["datasets"][0]
    keep = {"id", "title", "size", "checksum", "checksum_type", "url", "data_node", "index_node"}
    entry["files"] = [{k: v for k, v in f.items() if k in keep} for f in entry["files"]]
    assert index_server.publish(batch).status_code == 200
    variable = entry["dataset"]["variable_id"]
    files = index_server.search(type="File", variable_id=variable, project="CMIP6")["response"]
    assert files["numFound"] == len(entry["files"])
    doc = files["docs"][0]
    assert (
        doc["dataset_id"] == entry["dataset"]["id"]
        and doc["version"] == entry["dataset"]["version"]
    )
    assert "number_of_files" not in doc
    assert doc["master_id"] == f"{entry['dataset']['master_id']}.{doc['title']}"
