"""The esg-search contract, checked over HTTP against a real index holding sample records.

Expected results come from an independent evaluation in Python over every published record
(never from the server's own answers), so a test fails if the engine's filtering, counting,
ordering or paging is wrong.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from esgf_ha.records.samples import SampleDataset
from tests.servers import IndexServer

Doc = dict[str, object]


def published_with_latest(samples: list[SampleDataset]) -> tuple[list[Doc], list[Doc]]:
    """The records as published, with the one field the index derives on its own: only the
    newest version of a dataset on a data node is `latest`, and its files with it. Computed
    here, not read back from the server under test, so the server cannot grade itself."""
    newest: dict[tuple[str, str], int] = {}
    for s in samples:
        key = (str(s.dataset["master_id"]), str(s.dataset["data_node"]))
        newest[key] = max(newest.get(key, 0), int(str(s.dataset["version"]).lstrip("v")))
    datasets: list[Doc] = []
    files: list[Doc] = []
    for s in samples:
        key = (str(s.dataset["master_id"]), str(s.dataset["data_node"]))
        latest = newest[key] == int(str(s.dataset["version"]).lstrip("v"))
        datasets.append({**s.dataset, "latest": latest})
        files += [{**f, "latest": latest} for f in s.files]
    return datasets, sorted(files, key=lambda f: str(f["id"]))


@pytest.fixture(scope="module")
def truth(samples: list[SampleDataset]) -> tuple[list[Doc], list[Doc]]:
    datasets, files = published_with_latest(samples)
    assert len(datasets) > 40 and len(files) > 80
    assert any(d["latest"] is False for d in datasets), "no superseded version to tell apart"
    return datasets, files


@pytest.fixture(scope="module")
def all_datasets(truth: tuple[list[Doc], list[Doc]]) -> list[Doc]:
    return truth[0]


@pytest.fixture(scope="module")
def all_files(truth: tuple[list[Doc], list[Doc]]) -> list[Doc]:
    return truth[1]


def values(doc: Doc, name: str) -> list[str]:
    v = doc.get(name)
    if v is None:
        return []
    return (
        [str(x) for x in v]
        if isinstance(v, list)
        else [str(v).lower() if isinstance(v, bool) else str(v)]
    )


def ids(body: dict) -> set[str]:
    return {d["id"] for d in body["response"]["docs"]}


def check(server: IndexServer, docs: list[Doc], predicate: Callable[[Doc], bool], **params) -> dict:
    body = server.search(limit=10000, **params)
    expected = {str(d["id"]) for d in docs if predicate(d)}
    assert ids(body) == expected
    assert body["response"]["numFound"] == len(expected)
    return body


CASES: list[tuple[dict, Callable[[Doc], bool]]] = [
    ({"project": "CMIP6"}, lambda d: "CMIP6" in values(d, "project")),
    ({"source_id": "cesm2"}, lambda d: False),  # exact and case-sensitive
    ({"variable_id": ["tas", "pr"]}, lambda d: bool({"tas", "pr"} & set(values(d, "variable_id")))),
    ({"variable_id": "tas,pr"}, lambda d: bool({"tas", "pr"} & set(values(d, "variable_id")))),
    (
        {"variable_id": "tas", "source_id": "CESM2"},
        lambda d: "tas" in values(d, "variable_id") and "CESM2" in values(d, "source_id"),
    ),
    (
        {"source_id!": "CESM2", "project": "CMIP6"},
        lambda d: "CESM2" not in values(d, "source_id") and "CMIP6" in values(d, "project"),
    ),
    ({"latest": "True"}, lambda d: d["latest"] is True),
    ({"latest": "false"}, lambda d: d["latest"] is False),
    ({"replica": "false", "retracted": "false"}, lambda d: not d["replica"] and not d["retracted"]),
    ({"source_type": "CHEM"}, lambda d: "CHEM" in values(d, "source_type")),  # multi-valued
    (
        {"query": "project:CMIP6 AND source_id:CESM2 AND variable_id:(pr tas)"},
        lambda d: (
            "CESM2" in values(d, "source_id")
            and bool({"pr", "tas"} & set(values(d, "variable_id")))
        ),
    ),
    (
        {"query": "NOT (variable_id:tas) AND project:CMIP6"},
        lambda d: "tas" not in values(d, "variable_id") and "CMIP6" in values(d, "project"),
    ),
    (
        {"query": "variable_id:t*"},
        lambda d: any(v.startswith("t") for v in values(d, "variable_id")),
    ),
    (
        {"query": "tas"},
        lambda d: "tas" in values(d, "variable_id") or "tas" in values(d, "variable"),
    ),
    (
        {"query": "CESM2 OR inmcm4"},
        lambda d: "CESM2" in values(d, "source_id") or "inmcm4" in values(d, "model"),
    ),
    (
        {"query": '"air temperature"'},
        lambda d: (
            "air_temperature" in values(d, "cf_standard_name")
            or "Near-Surface Air Temperature" in values(d, "variable_long_name")
        ),
    ),
    ({"query": "version:[20200101 TO *]"}, lambda d: str(d["version"]) >= "20200101"),
    ({"min_version": "20190309"}, lambda d: str(d["version"]) >= "20190309"),
    ({"max_version": "20190308"}, lambda d: str(d["version"]) <= "20190308"),
    (
        {"start": "1860-01-01T00:00:00Z"},
        lambda d: "datetime_stop" in d and d["datetime_stop"] >= "1860-01-01T00:00:00Z",
    ),
    (
        {"end": "1855-01-01T00:00:00Z"},
        lambda d: "datetime_start" in d and d["datetime_start"] <= "1855-01-01T00:00:00Z",
    ),
    (
        {"bbox": "[10,10,20,20]"},
        lambda d: (
            "east_degrees" in d
            and d["east_degrees"] >= 10
            and d["north_degrees"] >= 10
            and d["west_degrees"] <= 20
            and d["south_degrees"] <= 20
        ),
    ),
    (
        {"query": "model:inmcm4 -experiment:historical"},
        lambda d: "inmcm4" in values(d, "model") and "historical" not in values(d, "experiment"),
    ),
    ({"query": "*:*"}, lambda d: True),
]


@pytest.mark.parametrize("params,predicate", CASES, ids=[str(c[0]) for c in CASES])
def test_dataset_constraints(
    loaded_index: IndexServer, all_datasets: list[Doc], params, predicate
) -> None:
    check(loaded_index, all_datasets, predicate, type="Dataset", **params)


def test_file_constraints(
    loaded_index: IndexServer, all_files: list[Doc], all_datasets: list[Doc]
) -> None:
    dataset_id = str(all_datasets[3]["id"])
    check(
        loaded_index,
        all_files,
        lambda d: d["dataset_id"] == dataset_id,
        type="File",
        dataset_id=dataset_id,
    )
    check(
        loaded_index,
        all_files,
        lambda d: "pr" in values(d, "variable_id") and d["latest"] is True,
        type="File",
        variable_id="pr",
        latest="true",
    )


def test_facet_counts_match_the_records(loaded_index: IndexServer, all_datasets: list[Doc]) -> None:
    body = loaded_index.search(
        project="CMIP6",
        latest="true",
        limit=0,
        facets="source_id, variable_id,realm,source_type,data_node",
    )
    docs = [d for d in all_datasets if "CMIP6" in values(d, "project") and d["latest"] is True]
    assert body["response"]["numFound"] == len(docs)
    assert body["response"]["docs"] == []
    fields = body["facet_counts"]["facet_fields"]
    for name in ("source_id", "variable_id", "realm", "source_type", "data_node"):
        expected = Counter(v for d in docs for v in set(values(d, name)))
        flat = fields[name]
        got = dict(zip(flat[::2], flat[1::2], strict=True))
        assert got == dict(expected)
        assert flat[::2] == sorted(flat[::2])  # facet.sort=lex
    assert set(body["facet_counts"]) == {
        "facet_queries",
        "facet_fields",
        "facet_ranges",
        "facet_intervals",
        "facet_heatmaps",
    }


def test_facets_star_lists_the_configured_facets(loaded_index: IndexServer) -> None:
    body = loaded_index.search(facets="*", limit=0)
    fields = body["facet_counts"]["facet_fields"]
    names = set(fields)
    assert {"project", "source_id", "variable_id", "data_node", "model", "institute"} <= names
    # a configured facet no record holds yet is listed, with no values
    assert "driving_experiment_id" in names and fields["driving_experiment_id"] == []
    # fields records hold that are no facet of any project are not
    held = set(loaded_index.search(limit=1)["response"]["docs"][0])
    assert {"version", "directory_format_template_"} <= held
    assert not names & {"version", "creation_date", "directory_format_template_", "access"}
    assert not names & {"id", "master_id", "instance_id", "title", "url", "size", "latest"}


def test_facets_star_narrows_to_the_projects_asked_for(loaded_index: IndexServer) -> None:
    cmip6 = loaded_index.search(project="CMIP6", facets="*", limit=0)["facet_counts"]
    names = list(cmip6["facet_fields"])
    assert {"source_id", "experiment_id", "variant_label", "data_node"} <= set(names)
    assert not set(names) & {"model", "institute", "driving_model", "rcm_version"}
    total = loaded_index.search(project="CMIP6", limit=0)["response"]["numFound"]
    assert dict(pairs(cmip6["facet_fields"]["project"])) == {"CMIP6": total}
    both = loaded_index.search(project="CMIP6,CMIP5", facets="*", limit=0)["facet_counts"]
    assert {"model", "source_id"} <= set(both["facet_fields"])
    unknown = loaded_index.search(project="NOPE", facets="*", limit=0)["facet_counts"]
    assert set(unknown["facet_fields"]) >= set(both["facet_fields"])


@pytest.mark.parametrize(
    "name", ["driving_experiment_id", "driving_source_id", "target_mip", "rcm_name", "domain"]
)
def test_configured_facet_without_records_finds_nothing(loaded_index: IndexServer, name) -> None:
    body = loaded_index.search(**{name: "historical"}, facets=name)
    assert body["response"]["numFound"] == 0
    assert body["facet_counts"]["facet_fields"][name] == []
    negated = loaded_index.search(**{f"{name}!": "historical"}, limit=0)
    assert negated["response"]["numFound"] > 40


def test_a_name_that_is_no_facet_is_refused(loaded_index: IndexServer) -> None:
    with loaded_index.client() as c:
        for name in ("driving_experiment", "not_a_facet", "version_x"):
            r = c.get("/esg-search/search", params={name: "x"})
            assert r.status_code == 400, name
            assert f"Invalid HTTP query parameter={name}" in r.text


def pairs(flat: list) -> list[tuple[str, int]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def test_solr_typing_of_fields(loaded_index: IndexServer) -> None:
    doc = loaded_index.search(project="CMIP6", limit=1)["response"]["docs"][0]
    for name in ("id", "master_id", "instance_id", "version", "data_node", "index_node", "title"):
        assert isinstance(doc[name], str), name
    for name in ("project", "source_id", "variable_id", "directory_format_template_", "access"):
        assert isinstance(doc[name], list), name
    assert isinstance(doc["size"], int) and isinstance(doc["number_of_files"], int)
    assert doc["latest"] is True and doc["replica"] is False and doc["retracted"] is False
    assert doc["score"] == 1.0 and "_timestamp" in doc and "_version_" in doc
    f = loaded_index.search(type="File", dataset_id=doc["id"], limit=1)["response"]["docs"][0]
    for name in ("checksum", "checksum_type", "tracking_id", "url"):
        assert isinstance(f[name], list), name
    assert f["url"][0].endswith("|application/netcdf|HTTPServer")
    assert f["dataset_id"] == doc["id"]


def test_fields_projection(loaded_index: IndexServer) -> None:
    docs = loaded_index.search(fields="instance_id,size", limit=3)["response"]["docs"]
    assert docs and all(set(d) == {"instance_id", "size", "score"} for d in docs)


def test_paging_is_stable_and_complete(loaded_index: IndexServer, all_files: list[Doc]) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        body = loaded_index.search(type="File", limit=7, offset=offset, fields="id")
        docs = body["response"]["docs"]
        assert body["response"]["start"] == offset
        if not docs:
            break
        seen += [d["id"] for d in docs]
        offset += len(docs)
    assert seen == sorted(str(d["id"]) for d in all_files)  # files in id order, as esg-search


def test_sort_true_is_newest_first(loaded_index: IndexServer) -> None:
    docs = loaded_index.search(sort="true", limit=50, fields="_timestamp")["response"]["docs"]
    stamps = [d["_timestamp"] for d in docs]
    assert stamps == sorted(stamps, reverse=True)


def test_from_to_filters_on_index_time(loaded_index: IndexServer) -> None:
    assert (
        loaded_index.search(**{"from": "2000-01-01T00:00:00Z", "limit": 0})["response"]["numFound"]
        > 0
    )
    assert (
        loaded_index.search(**{"to": "2000-01-01T00:00:00Z", "limit": 0})["response"]["numFound"]
        == 0
    )
    assert loaded_index.search(**{"from": "NOW-1DAY", "limit": 0})["response"]["numFound"] > 0


def test_response_header_echoes_solr_params(loaded_index: IndexServer) -> None:
    body = loaded_index.search(
        project="CMIP6",
        variable_id=["tas", "pr"],
        facets="source_id",
        distrib="true",
        latest="True",
        limit=2,
    )
    params = body["responseHeader"]["params"]
    assert params["fq"] == [
        "type:Dataset",
        "latest:True",
        'project:"CMIP6"',
        'variable_id:"tas" || variable_id:"pr"',
    ]
    assert params["facet.field"] == "source_id" and params["rows"] == "2" and params["wt"] == "json"
    host = loaded_index.url.split("//")[1]
    assert params["shards"] == f"{host}/solr/datasets"
    assert "shards" not in loaded_index.search(distrib="false")["responseHeader"]["params"]
    assert loaded_index.search(type="File", limit=0)["responseHeader"]["params"]["sort"] == "id asc"


def test_xml_is_the_default_format(loaded_index: IndexServer) -> None:
    with loaded_index.client() as c:
        r = c.get(
            "/esg-search/search/", params={"project": "CMIP6", "facets": "source_id", "limit": 2}
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    result = root.find("result")
    assert result is not None and int(result.get("numFound", "0")) > 2
    docs = result.findall("doc")
    assert len(docs) == 2
    assert docs[0].find("arr[@name='project']/str").text == "CMIP6"
    assert docs[0].find("bool[@name='latest']").text in ("true", "false")
    assert docs[0].find("long[@name='size']") is not None
    counts = root.find("lst[@name='facet_counts']/lst[@name='facet_fields']/lst[@name='source_id']")
    assert counts is not None and all(int(i.text) > 0 for i in counts.findall("int"))


@pytest.mark.parametrize(
    "params,status,message",
    [
        ({"bogus_field": "x"}, 400, "Invalid HTTP query parameter=bogus_field"),
        ({"bogus!": "x"}, 400, "Invalid HTTP query parameter=bogus"),
        ({"project": ""}, 400, "Invalid empty value for parameter=project"),
        (
            {"limit": "10001"},
            400,
            "Too many records requested, maximum allowed value is limit=10000",
        ),
        ({"limit": "ten"}, 400, "not an integer"),
        ({"offset": "-1"}, 400, "must not be negative"),
        ({"format": "application/json"}, 501, "Invalid requested format: application/json"),
        ({"lat": "10"}, 400, "Unsupported parameter: lat"),
        ({"distrib": "maybe"}, 400, "not a boolean"),
        ({"type": "dataset"}, 400, "Invalid value for parameter=type"),
        ({"query": "project:(CMIP6"}, 400, "parenthesis"),
        ({"query": '"unterminated'}, 400, "unterminated"),
        ({"bbox": "1,2,3,4"}, 400, "bbox"),
        ({"start": "not-a-date"}, 400, "start"),
    ],
)
def test_errors_are_clear(loaded_index: IndexServer, params, status, message) -> None:
    with loaded_index.client() as c:
        r = c.get("/esg-search/search", params=params)
    assert r.status_code == status
    assert message in r.text
    assert "Traceback" not in r.text


def test_case_insensitive_booleans_and_limit_zero(loaded_index: IndexServer) -> None:
    a = loaded_index.search(latest="True", limit=0)["response"]["numFound"]
    b = loaded_index.search(latest="true", limit=0)["response"]["numFound"]
    c = loaded_index.search(latest="T", limit=0)["response"]["numFound"]
    assert a == b == c > 0


def test_health_and_metrics(loaded_index: IndexServer) -> None:
    with loaded_index.client() as c:
        assert c.get("/livez").json()["ok"] is True
        ready = c.get("/readyz").json()
        assert ready["ready"] is True and ready["records"]["Dataset"] > 0
        c.get("/esg-search/search")
        text = c.get("/metrics").text
        assert 'esgf_http_requests_total{endpoint="search",status="200"}' in text
        assert 'esgf_index_records{type="File"}' in text
        spec = c.get("/openapi.json").json()
        assert "/api/v1/publish" in spec["paths"]
        r = c.get("/esg-search/search")
        assert int(r.headers["X-ESGF-Index-Sequence"]) >= 1
        assert float(r.headers["Server-Timing"].split("dur=")[1]) > 0
        assert c.get("/nowhere").status_code == 404
        assert isinstance(httpx.URL(loaded_index.url).port, int)


def test_operator_facets_file(tmp_path) -> None:
    facets = tmp_path / "facets.toml"
    facets.write_text(
        'common = ["project"]\n'
        "[projects]\n"
        'NEWPROJ = ["region_id", "driving_experiment_id"]\n'
        'CMIP6 = ["source_id", "experiment_id"]\n'
    )
    fields = tmp_path / "fields.toml"
    fields.write_text('star = "fields"\n')
    server = IndexServer(tmp_path / "index", extra_args=["--facets-file", str(facets)]).start()
    try:
        assert server.search(region_id="EUR-11")["response"]["numFound"] == 0
        star = server.search(project="NEWPROJ", facets="*", limit=0)["facet_counts"]
        assert list(star["facet_fields"]) == ["project", "region_id", "driving_experiment_id"]
        # the file's list replaces the built-in one of its project; the others are kept
        cmip6 = server.search(project="CMIP6", facets="*", limit=0)["facet_counts"]
        assert list(cmip6["facet_fields"]) == ["project", "source_id", "experiment_id"]
        cmip5 = server.search(project="CMIP5", facets="*", limit=0)["facet_counts"]
        assert "model" in cmip5["facet_fields"]
        with server.client() as c:
            r = c.get("/esg-search/search", params={"region": "x"})
        assert r.status_code == 400 and "Invalid HTTP query parameter=region" in r.text
    finally:
        server.stop()
    # star = "fields": every field records hold, as a Solr-profile esg-search lists them
    server = IndexServer(tmp_path / "index2", extra_args=["--facets-file", str(fields)]).start()
    try:
        from esgf_ha.records.samples import as_batch, cmip6_samples

        assert server.publish(as_batch(cmip6_samples(2, seed=3))).status_code == 200
        star = set(server.search(facets="*", limit=0)["facet_counts"]["facet_fields"])
        assert {"version", "directory_format_template_", "source_id"} <= star
        assert not star & {"id", "instance_id", "driving_experiment_id"}
        assert server.search(driving_experiment_id="x")["response"]["numFound"] == 0
    finally:
        server.stop()


@pytest.mark.parametrize(
    "text, message",
    [
        ("[projects]\nX = 'a'\n", "projects.X must be a list of facet names"),
        ("[projects]\nX = ['a b']\n", "'a b' is not a field name"),
        ("common = [\n", "not TOML"),
        ("facets = []\n", "unknown key(s) facets"),
        ('star = "all"\n', "star must be"),
    ],
)
def test_a_bad_facets_file_stops_the_index_with_a_reason(tmp_path, text, message) -> None:
    facets = tmp_path / "facets.toml"
    facets.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "esgf_ha", "serve", "index", "--state-dir", str(tmp_path / "s"),
         "--listen", "127.0.0.1:0", "--facets-file", str(facets)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


# -- free text over identifiers ----------------------------------------------------------------
def words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


def holds_phrase(doc: Doc, phrase: list[str]) -> bool:
    """True if the words follow each other in one value of any field of the record."""
    n = len(phrase)
    for name in doc:
        for value in values(doc, name):
            got = words(value)
            if any(got[i : i + n] == phrase for i in range(len(got) - n + 1)):
                return True
    return False


def free_text_ids(docs: list[Doc], step: int) -> list[str]:
    picked = docs[::step]
    return [str(d[k]) for d in picked for k in ("instance_id", "master_id", "id")]


@pytest.mark.parametrize("core", ["Dataset", "File"])
def test_free_text_that_is_an_id_finds_its_record(
    loaded_index: IndexServer, all_datasets: list[Doc], all_files: list[Doc], core: str
) -> None:
    docs = all_datasets if core == "Dataset" else all_files
    ids = free_text_ids(docs, 3 if core == "Dataset" else 11)
    if core == "File":
        ids += [str(d["dataset_id"]) for d in all_files[::13]]
    for text in ids:
        body = loaded_index.search(type=core, query=text, limit=10000, fields="*")
        found = {str(d["id"]) for d in body["response"]["docs"]}
        # every record holding the words in order is found, and nothing else
        expected = {str(d["id"]) for d in docs if holds_phrase(d, words(text))}
        assert found == expected, text
        assert any(text in (d["id"], d["instance_id"], d["master_id"], d.get("dataset_id"))
                   for d in body["response"]["docs"])  # fmt: skip


def test_free_text_id_inside_a_larger_query(loaded_index: IndexServer, all_datasets) -> None:
    cmip5 = next(d for d in all_datasets if values(d, "project") == ["CMIP5"])
    instance = str(cmip5["instance_id"])
    both = loaded_index.search(query=f"{instance} AND project:CMIP5")["response"]
    assert [d["id"] for d in both["docs"]] == [cmip5["id"]]
    neither = loaded_index.search(query=f"{instance} AND project:CMIP6")["response"]
    assert neither["numFound"] == 0
    # a part of an id, as a user copies it from a path
    middle = ".".join(instance.split(".")[2:6])
    part = loaded_index.search(query=middle, limit=10000)["response"]
    assert cmip5["id"] in {d["id"] for d in part["docs"]}
    assert all(holds_phrase(d, words(middle)) for d in part["docs"])


def test_a_store_of_schema_1_gets_its_free_text_rebuilt(tmp_path) -> None:
    from esgf_ha.records.samples import as_batch, cmip5_samples

    samples = cmip5_samples(3, seed=4)
    server = IndexServer(tmp_path / "index").start()
    try:
        assert server.publish(as_batch(samples)).status_code == 200
    finally:
        server.stop()
    # what schema 1 wrote: title and description words only
    with sqlite3.connect(tmp_path / "index" / "index.sqlite3") as db:
        for table in ("datasets", "files"):
            db.execute(f"UPDATE {table}_text SET body = 'nothing searchable'")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    server = IndexServer(tmp_path / "index").start()
    try:
        for s in samples:
            found = server.search(query=str(s.dataset["instance_id"]))["response"]["docs"]
            assert [d["id"] for d in found] == [s.dataset["id"]]
            title = str(s.dataset["title"])
            assert server.search(query=f'"{title}"')["response"]["numFound"] >= 1
            file_id = str(s.files[0]["instance_id"])
            files = server.search(type="File", query=file_id)["response"]["docs"]
            assert [d["id"] for d in files] == [s.files[0]["id"]]
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "index" / "index.sqlite3") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "2",
        )
