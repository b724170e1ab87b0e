"""The STAC API (`/stac`) against real master and replica indexes, with real STAC clients.

The index holds the sample datasets plus replica records of some of them (as a site's data
replicator publishes them) and a retraction. Every search is asked of both APIs — STAC and
esg-search — on the master and on a replica following it, and their counts and ids must agree;
pystac-client, intake-esgf's STAC index and stac-api-validator run in their own virtualenvs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esgf_ha.records.samples import SampleDataset, as_batch, cmip5_samples, cmip6_samples
from esgf_ha.replicator.records import replica_batch
from tests.replicas import caught_up, start_master, start_replica
from tests.servers import IndexServer

pytestmark = pytest.mark.clients

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".venv-clients"
DRIVER_TIMEOUT = 240.0
SITES = ("http://127.0.0.2:8081", "http://127.0.0.3:8081")  # replica sites named in records
JSON_FORMAT = "application/solr+json"


@pytest.fixture(scope="module")
def samples() -> list[SampleDataset]:
    return cmip6_samples(30) + cmip5_samples(6)


def _replicas_of(sample: SampleDataset, site: str) -> dict[str, object]:
    files = [(str(f["publish_path"]).split("/", 1)[1], f) for f in sample.files]
    return replica_batch(sample.dataset, files, data_node_url=site, root_name="esg_dataroot")


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, samples: list[SampleDataset]
) -> Iterator[tuple[IndexServer, IndexServer]]:
    base = tmp_path_factory.mktemp("stac")
    master = start_master(base / "master")
    replica = None
    try:
        assert master.publish(as_batch(samples)).status_code == 200
        for sample in samples[:3]:
            for site in SITES[: 1 + samples.index(sample) % 2]:
                r = master.publish(_replicas_of(sample, site))
                assert r.status_code == 200, r.text
        with master.client() as c:
            r = c.post(
                "/api/v1/retract",
                json={"ids": [str(samples[4].dataset["id"])]},
                headers=master.auth(),
            )
            assert r.status_code == 200, r.text
        replica = start_replica(base / "replica", master)
        caught_up(replica, master)
        yield master, replica
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


# -- helpers ----------------------------------------------------------------------------------
def stac_all(server: IndexServer, **params: Any) -> tuple[int, list[str]]:
    """numberMatched and every id, following next links (GET)."""
    ids: list[str] = []
    matched = -1
    url: str | None = "/stac/search"
    query: dict[str, Any] | None = {"limit": 7, **params}
    with server.client() as c:
        while url:
            r = c.get(url, params=query)
            assert r.status_code == 200, r.text
            body = r.json()
            matched = body["numberMatched"]
            ids += [f["id"] for f in body["features"]]
            url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
            query = None
            assert len(ids) <= matched
    return matched, ids


def esg_all(server: IndexServer, **params: Any) -> tuple[int, list[str]]:
    """numFound and the STAC ids of every match: instance_id for originals, id for replicas."""
    body = server.search(type="Dataset", limit=10_000, fields="id,instance_id,replica", **params)
    docs = body["response"]["docs"]
    ids = [d["id"] if d.get("replica") else d["instance_id"] for d in docs]
    return body["response"]["numFound"], ids


# (STAC search parameters, the esg-search parameters asking the same question)
EQUIVALENT: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {"replica": "false"}),
    ({"collections": "cmip6"}, {"project": "CMIP6", "replica": "false"}),
    ({"collections": "cmip5,cmip6"}, {"project": "CMIP5,CMIP6", "replica": "false"}),
    (
        {"filter": "variable_id = 'tas' AND latest = true"},
        {"variable_id": "tas", "latest": "true", "replica": "false"},
    ),
    (
        {"filter": "\"cmip6:variable_id\" IN ('tas','pr') AND NOT source_id = 'CESM2'"},
        {"query": "variable_id:(tas OR pr) AND NOT source_id:CESM2", "replica": "false"},
    ),
    (
        {"filter": "experiment_id = 'historical' OR experiment_id = 'amip'"},
        {"experiment_id": "historical,amip", "replica": "false"},
    ),
    ({"filter": "retracted = true"}, {"retracted": "true", "replica": "false"}),
    ({"filter": "replica = true"}, {"replica": "true"}),
    (
        {"filter": "replica = true AND data_node = '127.0.0.3:8081'"},
        {"replica": "true", "data_node": "127.0.0.3:8081"},
    ),
    (
        {"filter": "source_id LIKE 'MPI%'"},
        {"source_id": "MPI-ESM1-2-HR,MPI-ESM-LR", "replica": "false"},
    ),
    (
        {
            "filter-lang": "cql2-json",
            "filter": json.dumps(
                {
                    "op": "and",
                    "args": [
                        {"op": "in", "args": [{"property": "properties.cmip6:table_id"}, ["Amon"]]},
                        {"op": "=", "args": [{"property": "cmip6:retracted"}, False]},
                    ],
                }
            ),
        },
        {"table_id": "Amon", "retracted": "false", "replica": "false"},
    ),  # fmt: skip
    (
        {"datetime": "1855-06-01T00:00:00Z/1856-01-01T00:00:00Z", "bbox": "-10,-20,10,20"},
        {
            "start": "1855-06-01T00:00:00Z",
            "end": "1856-01-01T00:00:00Z",
            "bbox": "[-10,-20,10,20]",
            "replica": "false",
        },
    ),  # fmt: skip
]


@pytest.mark.parametrize("which", ["master", "replica"])
def test_answers_equal_esg_search(federation: tuple[IndexServer, IndexServer], which: str) -> None:
    server = federation[0] if which == "master" else federation[1]
    nonzero = 0
    for stac_params, esg_params in EQUIVALENT:
        matched, ids = stac_all(server, **stac_params)
        total, expected = esg_all(server, **esg_params)
        assert (matched, sorted(ids)) == (total, sorted(expected)), (stac_params, esg_params)
        assert len(set(ids)) == len(ids), f"duplicate ids paging {stac_params}"
        nonzero += total > 0
    assert nonzero >= len(EQUIVALENT) - 1  # the questions do select something


def test_item_shape(
    federation: tuple[IndexServer, IndexServer], samples: list[SampleDataset]
) -> None:
    master, _ = federation
    original = samples[1]  # replicated at both sites
    iid = str(original.dataset["instance_id"])
    with master.client() as c:
        r = c.get(f"/stac/collections/cmip6/items/{iid}")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/geo+json")
        item = r.json()
        assert c.get("/stac/collections/cmip6/items/nope").status_code == 404
        assert c.get("/stac/collections/nope/items").status_code == 404
    props = item["properties"]
    assert item["id"] == iid and item["collection"] == "cmip6"
    assert props["cmip6:variable_id"] == original.dataset["variable_id"]
    assert props["cmip6:source_type"] == original.dataset["source_type"]
    assert props["start_datetime"] == original.dataset["datetime_start"]
    assert props["end_datetime"] == original.dataset["datetime_stop"]
    doc = master.search(type="Dataset", instance_id=iid, replica="false")["response"]["docs"][0]
    assert props["cmip6:latest"] is doc["latest"] and props["cmip6:replica"] is False
    assert props["updated"] == doc["_timestamp"]
    assert item["bbox"] == [-180.0, -90.0, 180.0, 90.0]
    assert item["geometry"]["type"] == "Polygon"
    assert len(item["assets"]) == len(original.files)
    for f in original.files:
        a = item["assets"][str(f["title"])]
        assert a["href"] == str(f["url"][0]).split("|")[0]  # type: ignore[index]
        assert a["file:size"] == f["size"]
        assert a["file:checksum"] == "1220" + str(f["checksum"][0])  # type: ignore[index]
        rel = str(f["publish_path"]).split("/", 1)[1]
        assert {k: v["href"] for k, v in a["alternate"].items()} == {
            site.split("//")[1]: f"{site}/thredds/fileServer/esg_dataroot/{rel}" for site in SITES
        }


def test_pystac_client(federation: tuple[IndexServer, IndexServer], tmp_path: Path) -> None:
    master, replica = federation
    searches = [
        {"collections": ["cmip6"], "limit": 4},
        {"collections": ["cmip6"], "filter": "variable_id = 'tas'", "limit": 2},
        {"filter": {"op": "=", "args": [{"property": "cmip6:experiment_id"}, "historical"]},
         "filter_lang": "cql2-json", "limit": 3, "method": "POST"},
        {"collections": ["cmip6"], "bbox": [-10, -10, 10, 10], "datetime": "1850-01-01/1851-01-01",
         "limit": 5, "method": "GET"},
    ]  # fmt: skip
    for server in (master, replica):
        out = run_driver("stac", "drive_stac.py", f"{server.url}/stac",
                         "--searches", json.dumps(searches), cwd=tmp_path)  # fmt: skip
        assert all(out["conforms"].values()), out["conforms"]
        assert out["collections"] == ["cmip5", "cmip6"]
        expected = [
            esg_all(server, project="CMIP6", replica="false"),
            esg_all(server, project="CMIP6", variable_id="tas", replica="false"),
            esg_all(server, experiment_id="historical", replica="false"),
            esg_all(server, project="CMIP6", bbox="[-10,-10,10,10]", start="1850-01-01T00:00:00Z",
                    end="1851-01-01T00:00:00Z", replica="false"),
        ]  # fmt: skip
        for kwargs, seen, (total, ids) in zip(searches, out["searches"], expected, strict=True):
            assert "error" not in seen, seen
            assert seen["matched"] == total and sorted(seen["ids"]) == sorted(ids), kwargs
            assert seen["pages"] == -(-total // kwargs["limit"])  # paging followed every link
        first = out["searches"][0]["first"]
        assert first["assets"] and all(
            a["file:size"] > 0 and a["file:checksum"].startswith("1220")
            for a in first["assets"].values()
        )


def test_bad_input_is_a_clear_400(federation: tuple[IndexServer, IndexServer]) -> None:
    master, _ = federation
    bad_get = [
        {"filter": "S_INTERSECTS(geometry, POINT(1 2))"},
        {"filter": "variable_id = "},
        {"filter": "variable_id = source_id"},
        {"filter": "{not json", "filter-lang": "cql2-json"},
        {"filter": "a = 1", "filter-lang": "ecql"},
        {"bbox": "1,2,3"},
        {"bbox": "0,100,10,0"},
        {"datetime": "yesterday"},
        {"datetime": "../.."},
        {"limit": "0"},
        {"limit": "many"},
        {"token": "-5"},
        {"sortby": "properties.datetime"},
        {"nonsense": "1"},
    ]
    with master.client() as c:
        for params in bad_get:
            r = c.get("/stac/search", params=params)
            assert r.status_code == 400, (params, r.text)
            body = r.json()
            assert body["code"] == "BadRequest" and body["description"], body
        for payload in (b"{", b"[1]", b'{"limit": "x"}', b'{"intersects": {}}'):
            r = c.post("/stac/search", content=payload)
            assert r.status_code == 400, (payload, r.text)
        r = c.post("/stac/search", content=b"{" + b" " * (2 << 20) + b"}")
        assert r.status_code == 413
        # a property no record has is absent from every item, as CQL2 has it: null
        for text, matched in (("no_such = 'x'", 0), ("NOT no_such = 'x'", None),
                              ("no_such IS NULL", None)):  # fmt: skip
            r = c.get("/stac/search", params={"filter": text})
            assert r.status_code == 200, r.text
            assert matched is None or r.json()["numberMatched"] == matched
        deep = "NOT (" * 60 + "variable_id = 'x'" + ")" * 60
        assert c.get("/stac/search", params={"filter": deep}).status_code == 400


def test_fields_and_sortby(federation: tuple[IndexServer, IndexServer]) -> None:
    master, _ = federation
    with master.client() as c:
        r = c.get(
            "/stac/search",
            params={
                "fields": "-assets,-properties.cmip6:title,properties.cmip6:source_id",
                "limit": 2,
            },
        )
        item = r.json()["features"][0]
        assert "assets" not in item and "cmip6:source_id" in item["properties"]
        r = c.post(
            "/stac/search",
            json={"fields": {"include": ["properties.cmip6:variable_id"]}, "limit": 2},
        )
        item = r.json()["features"][0]
        assert set(item["properties"]) == {"cmip6:variable_id"} and "assets" not in item
        r = c.get("/stac/search", params={"sortby": "-properties.updated", "limit": 100})
        updated = [f["properties"]["updated"] for f in r.json()["features"]]
        assert updated == sorted(updated, reverse=True) and len(updated) > 1
    # fmt: skip


def test_changes_show_in_both_apis_at_once(tmp_path: Path, samples: list[SampleDataset]) -> None:
    master = start_master(tmp_path / "master")
    replica = None
    try:
        first, second = samples[:2]
        assert master.publish(as_batch([first])).status_code == 200
        replica = start_replica(tmp_path / "replica", master)
        iid = str(second.dataset["instance_id"])
        steps = [
            ("publish", lambda: master.publish(as_batch([second]))),
            ("replica", lambda: master.publish(_replicas_of(second, SITES[0]))),
            ("retract", lambda: _retract(master, str(second.dataset["id"]))),
        ]
        for name, action in steps:
            assert action().status_code == 200, name
            caught_up(replica, master)
            for server in (master, replica):
                with server.client() as c:
                    r = c.get(f"/stac/collections/cmip6/items/{iid}")
                assert r.status_code == 200, (name, r.text)
                item = r.json()
                esg = server.search(type="Dataset", instance_id=iid, replica="false")
                doc = esg["response"]["docs"][0]
                assert item["properties"]["cmip6:retracted"] == doc["retracted"]
                files = server.search(type="File", dataset_id=doc["id"], limit=1000)
                assert len(item["assets"]) == files["response"]["numFound"], name
                alternates = {k for a in item["assets"].values() for k in a.get("alternate", {})}
                copies = server.search(type="Dataset", instance_id=iid, replica="true")
                nodes = {d["data_node"] for d in copies["response"]["docs"]}
                assert alternates == (nodes if item["assets"] else set()), name
            if name == "retract":  # a retraction withdraws the files, in both APIs
                assert item["properties"]["cmip6:retracted"] is True and not item["assets"]
            if name == "replica":
                assert alternates == {SITES[0].split("//")[1]}
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


def _retract(server: IndexServer, dataset_id: str) -> httpx.Response:
    with server.client() as c:
        return c.post("/api/v1/retract", json={"ids": [dataset_id]}, headers=server.auth())


# -- client venvs -----------------------------------------------------------------------------
def client_python(client: str) -> Path:
    python = VENVS / client / "bin" / "python"
    if not python.exists() or not (VENVS / client / ".requirements.stamp").exists():
        pytest.fail(
            f"client venv {VENVS / client} is missing or incomplete: run "
            f"`bash tests/clients/setup_client_venvs.sh {ROOT} {client}`",
            pytrace=False,
        )
    return python


def run_driver(
    client: str, script: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    cmd = [str(client_python(client)), str(ROOT / "tests" / "clients" / script), *args]
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | (env or {})
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=DRIVER_TIMEOUT, cwd=cwd, env=environ
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (
        f"{shlex.join(cmd)}: {proc.returncode}\n{proc.stderr[-3000:]}"
    )
    return json.loads(lines[-1])


def test_intake_esgf_stac_index(tmp_path: Path, samples: list[SampleDataset]) -> None:
    """intake-esgf's STAC index class (it always speaks https) against a TLS index."""
    server = IndexServer(tmp_path / "tls-master", tls=True).start()
    try:
        assert server.publish(as_batch(samples)).status_code == 200
        host = server.url.split("://", 1)[1] + "/stac"  # the class prepends https://
        out = run_driver(
            "intake_esgf", "drive_intake_stac.py", host,
            "--search", json.dumps({"variable_id": "tas", "experiment_id": "historical"}),
            "--workdir", str(tmp_path), cwd=tmp_path,
            env={"REQUESTS_CA_BUNDLE": str(server.ca)},
        )  # fmt: skip
        assert "error" not in out, out
        body = server.search(type="Dataset", variable_id="tas", experiment_id="historical",
                             retracted="false", replica="false", limit=1000)  # fmt: skip
        docs = body["response"]["docs"]
        assert docs and len(out["rows"]) == len(docs)
        assert sorted(r["id"].split("|")[0] for r in out["rows"]) == sorted(
            d["instance_id"] for d in docs
        )
        for row in out["rows"]:
            assert row["variable_id"] == "tas" and row["experiment_id"] == "historical"
        files = server.search(type="File", dataset_id=",".join(d["id"] for d in docs),
                              limit=1000)["response"]["docs"]  # fmt: skip
        urls = sorted(u for f in out["files"] for u in f["urls"])
        assert urls == sorted(str(f["url"][0]).split("|")[0] for f in files)
    finally:
        server.stop()


VALIDATED = ["core", "collections", "features", "item-search", "filter",
             "item-search#fields", "features#fields"]  # fmt: skip


def test_stac_api_validator(federation: tuple[IndexServer, IndexServer], tmp_path: Path) -> None:
    """stac-api-validator finds no error for any conformance class we declare."""
    master, _ = federation
    runner = ROOT / "tests" / "clients" / "run_stac_validator.py"
    cmd = [str(client_python("stac")), str(runner), "--root-url", f"{master.url}/stac", "--collection", "cmip6",
           "--geometry", json.dumps({"type": "Point", "coordinates": [5.0, 5.0]}),
           "--fields-nested-property", "properties.cmip6:variable_id"]  # fmt: skip
    for name in VALIDATED:
        cmd += ["--conformance", name]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=DRIVER_TIMEOUT, cwd=tmp_path, env=env
    )
    (tmp_path / "validator.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0 and "errors: none" in proc.stdout.lower(), (
        proc.stdout[-6000:] + proc.stderr[-3000:]
    )


_text = st.text(st.characters(codec="utf-8", blacklist_categories=("Cs",)), max_size=60)
_cql = st.one_of(
    _text,
    st.sampled_from(
        [
            "variable_id = 'tas'",
            "a IN (",
            "NOT",
            "latest = true OR",
            "x LIKE '%'",
            "S_INTERSECTS(geometry, POINT(0 0))",
            "id = 1",
            "t_after(a, b)",
            "start_datetime > TIMESTAMP('2000-01-01T00:00:00Z')",
            "((((",
            "retracted IS NULL",
            "size BETWEEN 'a' AND 3",
        ]
    ),  # fmt: skip
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "collections",
                "ids",
                "bbox",
                "intersects",
                "datetime",
                "limit",
                "token",
                "filter",
                "filter-lang",
                "fields",
                "sortby",
                "q",
            ]
        ),
        st.one_of(_text, _cql),
        max_size=5,
    ),  # fmt: skip
    body=st.dictionaries(
        st.sampled_from(
            [
                "collections",
                "ids",
                "bbox",
                "intersects",
                "datetime",
                "limit",
                "token",
                "filter",
                "filter-lang",
                "fields",
                "sortby",
            ]
        ),
        _json_values,
        max_size=5,
    ),  # fmt: skip
)
def test_hostile_search_input_is_never_a_server_error(
    federation: tuple[IndexServer, IndexServer], params: dict[str, str], body: dict[str, Any]
) -> None:
    master, _ = federation
    with master.client() as c:
        r = c.get("/stac/search", params=params)
        assert r.status_code in (200, 400), (params, r.text[:300])
        if r.status_code == 400:
            assert r.json()["code"] == "BadRequest"
        r = c.post("/stac/search", json=body)
        assert r.status_code in (200, 400), (body, r.text[:300])
        r = c.get("/stac/collections/cmip6/items", params=params)
        assert r.status_code in (200, 400), (params, r.text[:300])
