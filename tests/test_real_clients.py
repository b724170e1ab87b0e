"""Real third-party ESGF clients against our real index server.

Each test runs one driver of tests/clients/ with that client's own virtualenv
(`.venv-clients/<client>/bin/python`, built by `make clients-setup`) as a subprocess against
an index started on an ephemeral loopback port, parses the single JSON object the driver
prints, and compares what the client saw with the truth computed from the sample records
(cross-checked with our own server's search answers). A missing client venv is a failure,
never a skip. See tests/clients/NOTES.md for what each client sends and reads.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from esgf_ha.records.drs import CMIP6
from esgf_ha.records.samples import SampleDataset
from tests.servers import IndexServer

pytestmark = pytest.mark.clients

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = ROOT / "tests" / "clients"
VENVS = ROOT / ".venv-clients"
DRIVER_TIMEOUT = 240.0

CMIP6_ID_FACETS = list(CMIP6.id_facets)
SELECTION: dict[str, Any] = {"project": "CMIP6", "variable_id": ["tas", "pr"]}
HEREDOC = "EOF--dataset.file.url.chksum_type.chksum"

Doc = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def client_python(client: str) -> Path:
    """The client's venv interpreter; a missing or unfinished venv fails the test."""
    venv = VENVS / client
    python = venv / "bin" / "python"
    if not python.exists() or not os.access(python, os.X_OK):
        pytest.fail(
            f"client venv {venv} is missing: run `make clients-setup` "
            f"(or `bash tests/clients/setup_client_venvs.sh {ROOT}`) first",
            pytrace=False,
        )
    if not (venv / ".requirements.stamp").exists():
        pytest.fail(
            f"client venv {venv} is incomplete (no .requirements.stamp): "
            "run `make clients-setup` to rebuild it",
            pytrace=False,
        )
    return python


def run_driver(client: str, script: str, *args: str, cwd: Path) -> Doc:
    """Run a driver in `cwd` (clients drop caches there, e.g. intake-esgf's http_cache.sqlite)."""
    cmd = [str(client_python(client)), str(DRIVERS / script), *args]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT,
            cwd=cwd,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} timed out after {exc.timeout}s: {shlex.join(cmd)}")
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (
        f"{shlex.join(cmd)} -> exit {proc.returncode}\n"
        f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
    )
    return json.loads(lines[-1])


def ok(value: Any, what: str) -> Any:
    """A driver step's result; a step that raised in the client fails here with its error."""
    if isinstance(value, dict) and "error" in value:
        detail = value.get("sub_errors") or value.get("trace") or ""
        pytest.fail(f"{what} failed in the client: {value['error']}\n{detail}")
    return value


def values(record: Doc, name: str) -> list[str]:
    v = record.get(name)
    if v is None:
        return []
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def first(record: Doc, name: str) -> Any:
    v = record.get(name)
    return v[0] if isinstance(v, list) else v


def service_url(record: Doc, service: str) -> str | None:
    for entry in values(record, "url"):
        parts = entry.split("|")
        if len(parts) == 3 and parts[2] == service:
            return parts[0]
    return None


def rel_path(file_record: Doc) -> str:
    """The file's DRS path below the data root (publish_path without the root name)."""
    return str(file_record["publish_path"]).split("/", 1)[1]


def matches(record: Doc, constraints: dict[str, Any]) -> bool:
    for name, wanted in constraints.items():
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if not set(values(record, name)) & {str(w) for w in wanted}:
            return False
    return True


def latest_only(samples: Iterable[SampleDataset]) -> list[SampleDataset]:
    """The newest version of every dataset (what `latest=true` must return)."""
    samples = list(samples)
    newest: dict[tuple[str, str], str] = {}
    for s in samples:
        key = (str(s.dataset["master_id"]), str(s.dataset["data_node"]))
        newest[key] = max(newest.get(key, ""), str(s.dataset["version"]))
    return [
        s
        for s in samples
        if newest[(str(s.dataset["master_id"]), str(s.dataset["data_node"]))]
        == str(s.dataset["version"])
    ]


def facet_counts(datasets: Iterable[SampleDataset], facets: Iterable[str]) -> dict[str, dict]:
    datasets = list(datasets)
    return {f: dict(Counter(v for s in datasets for v in values(s.dataset, f))) for f in facets}


def server_ids(server: IndexServer, **params: Any) -> set[str]:
    body = server.search(limit=10000, fields="id", **params)
    docs = body["response"]["docs"]
    assert body["response"]["numFound"] == len(docs)
    return {d["id"] for d in docs}


def script_files(script_lines: list[str]) -> list[tuple[str, ...]]:
    """The `'<path>' '<url>' '<checksum_type>' '<checksum>'` lines of a wget script."""
    out, inside = [], False
    for line in script_lines:
        if line.strip() == HEREDOC:
            inside = False
        elif inside and line.strip():
            out.append(tuple(shlex.split(line)))
        elif line.strip().startswith("cat <<") and HEREDOC in line:
            inside = True
    return out


# --------------------------------------------------------------------------- truth


@pytest.fixture(scope="module")
def latest_samples(samples: list[SampleDataset], loaded_index: IndexServer) -> list[SampleDataset]:
    latest = latest_only(samples)
    assert len(latest) < len(samples), "the samples must hold several versions of some datasets"
    # Our truth and our own server agree on what latest=true means (guards the oracle).
    assert server_ids(loaded_index, type="Dataset", latest="true") == {
        str(s.dataset["id"]) for s in latest
    }
    return latest


@pytest.fixture(scope="module")
def file_records(samples: list[SampleDataset]) -> dict[str, Doc]:
    return {str(f["id"]): f for s in samples for f in s.files}


def selected(latest: list[SampleDataset], constraints: dict[str, Any]) -> list[SampleDataset]:
    out = [s for s in latest if matches(s.dataset, constraints)]
    assert out, f"no sample dataset matches {constraints}: the test would prove nothing"
    return out


# --------------------------------------------------------------------------- esgf-pyclient


def test_pyesgf_local_and_distrib(
    loaded_index: IndexServer,
    latest_samples: list[SampleDataset],
    file_records: dict[str, Doc],
    tmp_path: Path,
) -> None:
    facets = ["source_id", "variable_id"]
    out = run_driver(
        "pyesgf",
        "drive_pyesgf.py",
        loaded_index.url,
        "--constraints",
        json.dumps(SELECTION),
        "--facets",
        ",".join(facets),
        "--latest",
        "true",
        "--negate",
        "variable_id=tas",
        "--mode",
        "both",
        "--wget-lines",
        "1000000",
        cwd=tmp_path,
    )
    truth = selected(latest_samples, SELECTION)
    truth_ids = {str(s.dataset["id"]) for s in truth}
    by_id = {str(s.dataset["id"]): s for s in truth}
    negated = [s for s in truth if "tas" not in values(s.dataset, "variable_id")]
    assert 0 < len(negated) < len(truth)
    assert server_ids(loaded_index, type="Dataset", latest="true", **SELECTION) == truth_ids
    truth_files = {
        (f["title"], service_url(f, "HTTPServer"), first(f, "checksum_type"), first(f, "checksum"))
        for s in truth
        for f in s.files
    }
    host, port = loaded_index.url.split("://", 1)[1].rsplit(":", 1)

    for mode in ("local", "distrib"):
        res = ok(out[mode], f"pyesgf {mode}")
        assert res["distrib"] is (mode == "distrib")
        assert ok(res["hit_count"], f"{mode} hit_count") == len(truth)
        assert ok(res["facet_counts"], f"{mode} facet_counts") == facet_counts(truth, facets)

        datasets = ok(res["datasets"], f"{mode} search()")
        got_ids = [d["id"] for d in datasets]
        assert len(got_ids) == len(set(got_ids)), "search() returned a dataset twice"
        assert set(got_ids) == truth_ids
        for d in datasets:
            assert d["number_of_files"] == by_id[d["id"]].dataset["number_of_files"]
            assert d["index_node"] == by_id[d["id"]].dataset["index_node"]

        files = ok(res["files"], f"{mode} file_context().search()")
        assert files["dataset_id"] == got_ids[0]
        expected = {str(f["id"]): f for f in by_id[files["dataset_id"]].files}
        assert files["hit_count"] == len(expected) > 0
        assert {f["file_id"] for f in files["files"]} == set(expected)
        for f in files["files"]:
            rec = file_records[f["file_id"]]
            assert f["filename"] == rec["title"]
            assert f["size"] == rec["size"]
            assert f["checksum"] == first(rec, "checksum")
            assert f["checksum_type"] == first(rec, "checksum_type")
            assert f["tracking_id"] == first(rec, "tracking_id")
            assert f["download_url"] == service_url(rec, "HTTPServer")
            assert f["download_url"].endswith("/" + rel_path(rec))
            assert f["opendap_url"] == service_url(rec, "OPENDAP")

        neg = ok(res["negation"], f"{mode} not_equals(variable_id=tas)")
        assert neg["hit_count"] == len(negated)
        assert set(neg["ids"]) == {str(s.dataset["id"]) for s in negated}

        wget = ok(res["wget"], f"{mode} get_download_script()")
        lines = wget["head"]
        assert len("\n".join(lines)) <= wget["length"]
        assert "# ESG Federation download script" in lines
        search_url = [ln for ln in lines if ln.startswith("# Search URL:")]
        assert len(search_url) == 1, lines[:20]
        assert search_url[0].startswith(f"# Search URL: {loaded_index.url}/esg-search/wget?")
        assert "project=CMIP6" in search_url[0]
        assert set(script_files(lines)) == truth_files

    shards = ok(out["distrib"]["shards"], "get_shard_list()")
    assert host in shards, shards
    assert port in [p[0] for p in shards[host]], shards


def test_pyesgf_paging_without_constraints(
    loaded_index: IndexServer, samples: list[SampleDataset], tmp_path: Path
) -> None:
    """No `latest`, no project: every version of every dataset, over several pages of 50."""
    out = run_driver(
        "pyesgf",
        "drive_pyesgf.py",
        loaded_index.url,
        "--constraints",
        "{}",
        "--facets",
        "project",
        "--mode",
        "local",
        "--no-wget",
        cwd=tmp_path,
    )
    res = ok(out["local"], "pyesgf local")
    all_ids = {str(s.dataset["id"]) for s in samples}
    assert len(all_ids) > 50, "need more than one pyesgf page (50) to test paging"
    assert ok(res["hit_count"], "hit_count") == len(all_ids)
    assert ok(res["facet_counts"], "facet_counts") == facet_counts(samples, ["project"])
    got = [d["id"] for d in ok(res["datasets"], "search()")]
    assert len(got) == len(set(got)) == len(all_ids)
    assert set(got) == all_ids


def test_pyesgf_versioned_id_as_free_text_and_configured_facets(
    loaded_index: IndexServer, samples: list[SampleDataset], tmp_path: Path
) -> None:
    """The habits esg-search users bring: a versioned dataset id as free text, pyesgf's default
    `facets=*`, and a constraint on a configured facet no record has yet."""
    from esgf_ha.index.facets import FacetProfile

    target = next(s for s in samples if values(s.dataset, "project") == ["CMIP5"])
    instance = str(target.dataset["instance_id"])
    assert instance.rsplit(".", 1)[1].startswith("v"), "the id must carry its version"
    out = run_driver(
        "pyesgf",
        "drive_pyesgf.py",
        loaded_index.url,
        "--constraints",
        json.dumps({"query": instance}),
        "--mode",
        "local",
        "--no-wget",
        cwd=tmp_path,
    )
    res = ok(out["local"], "pyesgf local")
    assert ok(res["hit_count"], "hit_count") == 1
    assert [d["id"] for d in ok(res["datasets"], "search()")] == [target.dataset["id"]]
    files = ok(res["files"], "file_context().search()")
    assert {f["file_id"] for f in files["files"]} == {str(f["id"]) for f in target.files}
    # pyesgf asked facets=*: the configured facets, not every field the records hold
    counts = ok(res["facet_counts"], "facet_counts")
    assert set(counts) <= set(FacetProfile.builtin().names())
    assert counts["project"] == {"CMIP5": 1}
    assert counts["model"] == {values(target.dataset, "model")[0]: 1}
    assert not set(counts) & {"version", "directory_format_template_", "creation_date"}

    new_project = run_driver(
        "pyesgf",
        "drive_pyesgf.py",
        loaded_index.url,
        "--constraints",
        json.dumps({"project": "CORDEX-CMIP6", "driving_experiment_id": "historical"}),
        "--facets",
        "driving_experiment_id",
        "--mode",
        "local",
        "--no-wget",
        cwd=tmp_path,
    )
    res = ok(new_project["local"], "pyesgf local, new project")
    assert ok(res["hit_count"], "hit_count") == 0
    assert ok(res["facet_counts"], "facet_counts") == {"driving_experiment_id": {}}
    assert ok(res["datasets"], "search()") == []


# --------------------------------------------------------------------------- intake-esgf


def test_intake_esgf_search_and_file_info(
    loaded_index: IndexServer,
    latest_samples: list[SampleDataset],
    tmp_path: Path,
) -> None:
    search = {"variable_id": ["tas", "pr"]}  # intake-esgf adds project=CMIP6 itself
    out = run_driver(
        "intake_esgf",
        "drive_intake_esgf.py",
        loaded_index.url,
        "--search",
        json.dumps(search),
        "--file-info",
        "--workdir",
        str(tmp_path / "intake"),
        cwd=tmp_path,
    )
    truth = selected(latest_samples, {"project": "CMIP6", **search})
    assert len(truth) > 10, "need more than intake-esgf's default page (10) to test paging"
    by_id = {str(s.dataset["id"]): s for s in truth}

    res = ok(out["search"], "ESGFCatalog.search()")
    columns = res["columns"]
    for col in ["project", *CMIP6_ID_FACETS, "version", "id"]:
        assert col in columns, f"column {col} missing from {columns}"
    assert res["n_rows"] == len(res["records"]) == len(truth)

    seen: set[str] = set()
    for row in res["records"]:
        assert isinstance(row["id"], list) and len(row["id"]) == 1, row
        (dsid,) = row["id"]
        assert dsid in by_id, f"unexpected dataset {dsid}"
        assert dsid not in seen, f"dataset {dsid} listed twice"
        seen.add(dsid)
        rec = by_id[dsid].dataset
        assert row["project"] == "CMIP6"
        for facet in CMIP6_ID_FACETS:
            assert row[facet] == first(rec, facet), (facet, row)
        assert row["version"] == rec["version"]
    assert seen == set(by_id)

    infos = ok(out.get("file_info"), "get_file_info()")
    expected = {
        (
            str(f["dataset_id"]),
            rel_path(f),
            f["size"],
            first(f, "checksum"),
            first(f, "checksum_type"),
            service_url(f, "HTTPServer"),
        )
        for s in truth
        for f in s.files
    }
    got = [
        (
            i["dataset_id"],
            i["path"],
            i["size"],
            i["checksum"],
            i["checksum_type"],
            (i.get("HTTPServer") or [None])[0],
        )
        for i in infos
    ]
    assert len(got) == len(set(got)), "a file was listed twice"
    assert set(got) == expected


# --------------------------------------------------------------------------- esgpull


@pytest.mark.parametrize("distrib", ["false", "true"])
def test_esgpull_api(
    loaded_index: IndexServer,
    latest_samples: list[SampleDataset],
    file_records: dict[str, Doc],
    distrib: str,
    tmp_path: Path,
) -> None:
    facets = ["variable_id", "source_id"]
    out = run_driver(
        "esgpull",
        "drive_esgpull.py",
        loaded_index.url,
        "--selection",
        json.dumps(SELECTION),
        "--facets",
        ",".join(facets),
        "--negate",
        "variable_id=tas",
        "--wildcard",
        "variable_id=t*",
        "--text",
        "CESM2",
        "--distrib",
        distrib,
        cwd=tmp_path,
    )
    truth = selected(latest_samples, SELECTION)
    by_instance = {str(s.dataset["instance_id"]): s for s in truth}
    truth_files = {str(f["instance_id"]): f for s in truth for f in s.files}

    assert ok(out["probe"], "probe") == "ok"
    hits = ok(out["hits"], "hits")
    assert hits == {"datasets": len(truth), "files": len(truth_files)}
    assert ok(out["hints"], "hints") == facet_counts(truth, facets)

    datasets = ok(out["datasets"], "datasets()")
    assert sorted(d["dataset_id"] for d in datasets) == sorted(by_instance)
    for d in datasets:
        rec = by_instance[d["dataset_id"]].dataset
        assert d["master_id"] == rec["master_id"]
        assert d["version"] == f"v{rec['version']}"
        assert d["data_node"] == rec["data_node"]
        assert d["size"] == rec["size"]
        assert d["number_of_files"] == rec["number_of_files"]

    files = ok(out["files"], "files()")
    assert sorted(f["file_id"] for f in files) == sorted(truth_files)
    for f in files:
        rec = truth_files[f["file_id"]]
        assert f["dataset_id"] == str(rec["dataset_id"]).split("|", 1)[0]
        assert f["filename"] == rec["title"]
        assert f["size"] == rec["size"]
        assert f["checksum"] == first(rec, "checksum")
        assert f["checksum_type"] == first(rec, "checksum_type") == "SHA256"
        assert f["url"] == service_url(rec, "HTTPServer")
        assert f["data_node"] == rec["data_node"]
        assert f["local_path"] == rel_path(rec).rsplit("/", 1)[0]
        assert f["version"] == f"v{rec['version']}"
    assert out["log"] == [], "esgpull rejected records (invalid metadata?)"

    cmip6 = selected(latest_samples, {"project": "CMIP6"})
    cases = {
        "negation": [s for s in cmip6 if "tas" not in values(s.dataset, "variable_id")],
        "wildcard": [
            s for s in cmip6 if any(v.startswith("t") for v in values(s.dataset, "variable_id"))
        ],
        "free_text": [s for s in truth if first(s.dataset, "source_id") == "CESM2"],
    }
    # The same questions asked of our server in esg-search keyword form agree with the truth.
    assert server_ids(
        loaded_index, type="Dataset", latest="true", project="CMIP6", **{"variable_id!": "tas"}
    ) == {str(s.dataset["id"]) for s in cases["negation"]}
    assert server_ids(loaded_index, type="Dataset", latest="true", query="CESM2", **SELECTION) == {
        str(s.dataset["id"]) for s in cases["free_text"]
    }
    for name, expected in cases.items():
        assert 0 < len(expected) < len(cmip6), name
        got = ok(out[name], name)
        assert got["hits"] == len(expected), (name, got["selection"])
        assert sorted(got["dataset_ids"]) == sorted(
            str(s.dataset["instance_id"]) for s in expected
        ), (name, got["selection"])


# --------------------------------------------------------------------------- esgcet


@pytest.fixture
def tls_index(tmp_path: Path) -> Iterator[IndexServer]:
    server = IndexServer(
        tmp_path / "tls-master", tls=True, extra_args=["--ws-anonymous-from", "127.0.0.0/8"]
    ).start()
    yield server
    server.stop()


def esgpublish(server: IndexServer, workdir: Path, *args: str) -> Doc:
    node = server.url.split("://", 1)[1].rstrip("/")
    return run_driver(
        "esgcet",
        "drive_esgcet.py",
        "--index-node",
        node,
        "--workdir",
        str(workdir),
        "--verify",
        "--ca-bundle",
        str(server.ca),
        *args,
        cwd=workdir.parent,
    )


def assert_published(run: Doc) -> None:
    pub = run["publish"]
    detail = json.dumps(pub, indent=1)[-4000:]
    assert pub["returncode"] == 0, detail
    assert pub["pub_status"] == [f"PASS id={run['dataset_id']}"], detail
    assert pub["errors"] == [], detail
    assert not any("SSL error" in ln for ln in pub["stderr_tail"]), detail


def docs(server: IndexServer, **params: Any) -> list[Doc]:
    body = server.search(limit=10000, **params)
    assert body["response"]["numFound"] == len(body["response"]["docs"])
    return body["response"]["docs"]


def check_files(server: IndexServer, run: Doc, data_node: str, latest: bool) -> None:
    """The files esgcet published for `run` are searchable, with its sizes and checksums."""
    data_root = Path(run["config"]["cmor_path"])
    expected = {}
    for row in run["files"]:
        rel = Path(row["path"]).relative_to(data_root).as_posix()
        expected[Path(row["path"]).name] = (
            row["size"],
            row["sha256"],
            f"https://{data_node}/thredds/fileServer/esg_dataroot/{rel}",
        )
    found = docs(server, type="File", dataset_id=run["dataset_id"])
    assert len(found) == len(expected)
    for doc in found:
        assert doc["title"] in expected, doc["title"]
        size, sha256, url = expected[doc["title"]]
        assert doc["size"] == size
        assert doc["checksum"] == [sha256]
        assert doc["checksum_type"] == ["SHA256"]
        assert service_url(doc, "HTTPServer") == url
        assert doc["latest"] is latest
        assert doc["retracted"] is False
        assert doc["master_id"] == f"{run['master_id']}.{doc['title']}"
    assert len({str(first(d, "tracking_id")) for d in found}) == len(found)


def test_esgcet_publish_new_version_and_retract(tls_index: IndexServer, tmp_path: Path) -> None:
    server, data_node = tls_index, "esgf-data.example.org"

    # 1. First version, two files.
    v1 = esgpublish(server, tmp_path / "v1", "--version", "20190308", "--nfiles", "2")
    assert_published(v1)
    master_id, v1_id = v1["master_id"], v1["dataset_id"]
    body = server.search(type="Dataset", master_id=master_id, latest="true")
    assert body["response"]["numFound"] == 1
    (ds,) = body["response"]["docs"]
    assert ds["id"] == v1_id
    assert ds["instance_id"] == v1["instance_id"]
    assert ds["version"] == "20190308"
    assert ds["latest"] is True and ds["retracted"] is False
    assert ds["number_of_files"] == 2
    assert ds["size"] == sum(r["size"] for r in v1["files"])
    assert ds["data_node"] == data_node
    assert ds["project"] == ["CMIP6"]
    for facet, value in zip(CMIP6_ID_FACETS, master_id.split("."), strict=True):
        assert values(ds, facet) == [value], facet
    check_files(server, v1, data_node, latest=True)

    # 2. A second version: it becomes the latest, the first one (and its files) not.
    v2 = esgpublish(server, tmp_path / "v2", "--version", "20200101", "--nfiles", "3")
    assert_published(v2)
    v2_id = v2["dataset_id"]
    versions = {d["id"]: d for d in docs(server, type="Dataset", master_id=master_id)}
    assert set(versions) == {v1_id, v2_id}
    assert versions[v2_id]["latest"] is True
    assert versions[v1_id]["latest"] is False
    assert versions[v2_id]["number_of_files"] == 3
    assert [d["id"] for d in docs(server, type="Dataset", master_id=master_id, latest="true")] == [
        v2_id
    ]
    check_files(server, v2, data_node, latest=True)
    check_files(server, v1, data_node, latest=False)
    assert len(docs(server, type="File", latest="true")) == 3

    # 3. Retract the first version through esgcet's own unpublish calls.
    rt = esgpublish(
        server,
        tmp_path / "retract",
        "--version",
        "20190308",
        "--skip-publish",
        "--unpublish",
        "retract",
    )
    assert rt["dataset_id"] == v1_id
    lib = rt["unpublish"]["library"]
    detail = json.dumps(lib, indent=1)[-3000:]
    assert lib["returncode"] == 0, detail
    assert json.loads(lib["stdout_tail"][-1]) == {"found": True, "not_retracted": True}, detail
    assert any(f"Retracted id: {v1_id}" in ln for ln in lib["stderr_tail"]), detail

    (old,) = docs(server, type="Dataset", id=v1_id)
    assert old["retracted"] is True
    assert old["latest"] is False
    assert docs(server, type="File", dataset_id=v1_id) == []
    assert [d["id"] for d in docs(server, type="Dataset", retracted="true")] == [v1_id]
    latest = docs(server, type="Dataset", master_id=master_id, latest="true")
    assert [d["id"] for d in latest] == [v2_id]
    assert latest[0]["retracted"] is False
    check_files(server, v2, data_node, latest=True)

    # Asking again finds the dataset already retracted and sends nothing.
    again = esgpublish(
        server,
        tmp_path / "again",
        "--version",
        "20190308",
        "--skip-publish",
        "--unpublish",
        "retract",
    )
    lib = again["unpublish"]["library"]
    assert lib["returncode"] == 0, json.dumps(lib, indent=1)[-3000:]
    assert json.loads(lib["stdout_tail"][-1]) == {"found": True, "not_retracted": False}
