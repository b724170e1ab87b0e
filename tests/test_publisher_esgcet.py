"""The real esgcet 5.5.3 `esgpublish` and `esgf-ha publish` on the same sample files answer
searches alike; `esgf-ha cert issue` certificates are accepted by the master over HTTPS.

esgcet never sends a client certificate (see tests/clients/NOTES.md), so it publishes to a
master that trusts the loopback network for /esg-search/ws/*; the certificate path is
tested with httpx and with `esgf-ha publish --cert`.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from esgf_ha.records.drs import CMIP6
from tests.publisher_helpers import (
    ROOT_NAME,
    docs,
    esgf_ha,
    http_url,
    make_samples,
    one,
    publish,
    real_root,
)
from tests.servers import IndexServer

VENV = Path(__file__).resolve().parents[1] / ".venv-clients" / "esgcet"
DATA_NODE = "esgf-data.example.org"

DATASET_FIELDS = [
    "id",
    "master_id",
    "instance_id",
    "version",
    "title",
    "project",
    *CMIP6.id_facets,
    "number_of_files",
    "size",
    "latest",
    "replica",
    "retracted",
    "data_node",
    "access",
    "variable",
    "cf_standard_name",
    "variable_long_name",
    "variable_units",
    "frequency",
    "realm",
    "product",
    "nominal_resolution",
    "source_type",
    "grid",
    "variant_label",
    "sub_experiment_id",
    "activity_id",
    "data_specs_version",
    "experiment_title",
    "model_cohort",
    "pid",
    "directory_format_template_",
    "dataset_id_template_",
]
FILE_FIELDS = [
    "id",
    "dataset_id",
    "master_id",
    "instance_id",
    "title",
    "size",
    "checksum",
    "checksum_type",
    "tracking_id",
    "latest",
    "replica",
    "data_node",
    "project",
    *CMIP6.id_facets,
]


def esgpublish(
    index: IndexServer, mapfile: Path, data: Path, workdir: Path, *, ok: bool = True
) -> str:
    """Run the real esgpublish on one mapfile; returns its output. `ok=False`: it must
    refuse the mapfile."""
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{VENV} is missing: run `make clients-setup`", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "index_node": index.url.split("://", 1)[1].rstrip("/"),
        "data_node": DATA_NODE,
        "data_roots": {str(data): ROOT_NAME},
        "cmor_path": str(data),
        "pid_creds": {},
        "globus_uuid": "none",
        "disable_citation": True,
        "disable_qaqc": True,
        "silent": "false",
        "verbose": "false",
        "set_replica": False,
    }
    (workdir / "esg.yaml").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESG_CONFIG_FILE")}
    env.update(HOME=str(workdir), REQUESTS_CA_BUNDLE=str(index.ca))
    cmd = [
        str(VENV / "bin" / "esgpublish"),
        "--config",
        str(workdir / "esg.yaml"),
        "--map",
        str(mapfile),
        "--project",
        "cmip6",
        "--verify",
    ]
    proc = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    if not ok:
        assert proc.returncode != 0 and "PUB_STATUS=PASS" not in output, output[-4000:]
        return output
    assert proc.returncode == 0, output[-4000:]
    assert "PUB_STATUS=PASS" in output and "SSL error" not in output, output[-4000:]
    return output


def comparable(record: dict, fields: list[str]) -> dict:
    out = {f: record.get(f) for f in fields}
    out["url"] = http_url(record) if record["type"] == "File" else None
    return out


@pytest.fixture
def esgcet_master(tmp_path: Path) -> Iterator[IndexServer]:
    server = IndexServer(
        tmp_path / "esgcet-master", tls=True, extra_args=["--ws-anonymous-from", "127.0.0.0/8"]
    ).start()
    yield server
    server.stop()


@pytest.fixture
def our_master(tmp_path: Path) -> Iterator[IndexServer]:
    server = IndexServer(tmp_path / "our-master").start()
    yield server
    server.stop()


@pytest.mark.clients
def test_esgpublish_and_esgf_ha_publish_answer_searches_alike(
    esgcet_master: IndexServer, our_master: IndexServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    make_samples(data, "CMIP6", 2, 21)
    maps = tmp_path / "maps"
    result = esgf_ha("mapfile", "--root", f"{ROOT_NAME}={data}", "--outdir", str(maps), str(data))
    assert result.exit_code == 0, result.output
    mapfiles = sorted(maps.glob("*.map"), key=lambda m: m.name.rsplit(".v", 1)[1])
    assert len(mapfiles) >= 3  # dataset 0 has two versions

    for i, mapfile in enumerate(mapfiles):  # oldest version first, as a site would
        esgpublish(esgcet_master, mapfile, data, tmp_path / f"esgcet-{i}")
    code, summary = publish(
        our_master, data, DATA_NODE, *(a for m in mapfiles for a in ("--mapfile", str(m)))
    )
    assert code == 0, summary

    theirs = {d["id"]: d for d in docs(esgcet_master, type="Dataset")}
    ours = {d["id"]: d for d in docs(our_master, type="Dataset")}
    assert sorted(theirs) == sorted(ours) and len(ours) == len(mapfiles)
    for dataset_id, doc in ours.items():
        assert comparable(doc, DATASET_FIELDS) == comparable(theirs[dataset_id], DATASET_FIELDS)
    their_files = {d["id"]: d for d in docs(esgcet_master, type="File")}
    our_files = {d["id"]: d for d in docs(our_master, type="File")}
    assert sorted(their_files) == sorted(our_files)
    assert len(our_files) == len(list(data.rglob("*.nc")))
    for file_id, doc in our_files.items():
        assert comparable(doc, FILE_FIELDS) == comparable(their_files[file_id], FILE_FIELDS)
        assert one(doc, "publish_path") == one(their_files[file_id], "publish_path")

    # the same searches get the same answers
    for params in (
        {"type": "Dataset", "latest": "true", "facets": "source_id,variable_id,experiment_id"},
        {"type": "File", "variable_id": "tas", "facets": "member_id,table_id"},
        {"type": "Dataset", "query": "experiment_title:*"},
    ):
        a, b = esgcet_master.search(limit=100, **params), our_master.search(limit=100, **params)
        assert a["response"]["numFound"] == b["response"]["numFound"], params
        # datasets come in publication order, which differs (esgcet went version by version)
        assert sorted(d["id"] for d in a["response"]["docs"]) == sorted(
            d["id"] for d in b["response"]["docs"]
        )
        assert a.get("facet_counts") == b.get("facet_counts"), params


# real CMIP6 versions of four centres: one to seven files; gregorian, 360_day, 365_day and
# julian calendars; gn, gr and gr1 grids; Amon and day; GFDL-CM4's frequency "monC"
REAL_VERSIONS = [
    "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn/v20190311",
    "CMIP6/CMIP/NIMS-KMA/KACE-1-0-G/historical/r1i1p1f1/day/ta/gr/v20191220",
    "CMIP6/CMIP/NOAA-GFDL/GFDL-CM4/historical/r1i1p1f1/Amon/ta/gr1/v20180701",
    "CMIP6/CMIP/CCCR-IITM/IITM-ESM/historical/r1i1p1f1/day/ta/gn/v20191226",
]
# NCAR's: both files of each version carry one tracking_id
SHARED_TRACKING_ID = [
    "CMIP6/CMIP/NCAR/CESM2-FV2/historical/r1i1p1f1/Amon/ta/gn/v20191120",
    "CMIP6/CMIP/NCAR/CESM2-WACCM-FV2/historical/r1i1p1f1/Amon/ta/gn/v20191120",
]


@pytest.mark.clients
def test_esgpublish_and_esgf_ha_publish_real_files_alike(
    esgcet_master: IndexServer, our_master: IndexServer, tmp_path: Path
) -> None:
    """Real CMIP6 files: esgcet's records and ours agree; the versions whose files share a
    tracking_id are refused by esgcet 5.5.3 and published by us, with a warning."""
    real, data = real_root(), tmp_path / "data"
    for rel in REAL_VERSIONS + SHARED_TRACKING_ID:
        shutil.copytree(real / rel, data / rel)
    maps = tmp_path / "maps"
    result = esgf_ha("mapfile", "--root", f"{ROOT_NAME}={data}", "--outdir", str(maps), str(data))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning DuplicateTrackingId:") == len(SHARED_TRACKING_ID)
    instance = {rel: ".".join(Path(rel).parts) for rel in REAL_VERSIONS + SHARED_TRACKING_ID}
    for i, rel in enumerate(REAL_VERSIONS):
        esgpublish(esgcet_master, maps / f"{instance[rel]}.map", data, tmp_path / f"esgcet-{i}")
    for i, rel in enumerate(SHARED_TRACKING_ID):
        refused = esgpublish(
            esgcet_master, maps / f"{instance[rel]}.map", data, tmp_path / f"dup-{i}", ok=False
        )
        assert "Duplicate tracking_id" in refused, refused[-2000:]
    code, summary = publish(our_master, data, DATA_NODE, str(data))
    assert code == 0, summary
    assert sorted(p.split("|")[0] for p in summary["published"]) == sorted(instance.values())
    assert sorted(w["path"] for w in summary["warnings"]) == sorted(
        str(sorted((data / rel).glob("*.nc"))[1]) for rel in SHARED_TRACKING_ID
    )

    theirs = {d["id"]: d for d in docs(esgcet_master, type="Dataset")}
    ours = {d["id"]: d for d in docs(our_master, type="Dataset")}
    assert sorted(i.split("|")[0] for i in theirs) == sorted(instance[r] for r in REAL_VERSIONS)
    for dataset_id, doc in theirs.items():
        assert comparable(ours[dataset_id], DATASET_FIELDS) == comparable(doc, DATASET_FIELDS)
    their_files = {d["id"]: d for d in docs(esgcet_master, type="File")}
    our_files = {d["id"]: d for d in docs(our_master, type="File")}
    assert set(their_files) <= set(our_files)
    for file_id, doc in their_files.items():
        assert comparable(our_files[file_id], FILE_FIELDS) == comparable(doc, FILE_FIELDS)
    for rel in SHARED_TRACKING_ID:
        files = docs(our_master, type="File", dataset_id=f"{instance[rel]}|{DATA_NODE}")
        assert len(files) == 2 and len({one(f, "tracking_id") for f in files}) == 1


def _doc_xml(record: dict) -> bytes:
    parts = ["<doc>"]
    for name, value in record.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f'<field name="{name}">{v}</field>')
    return ("".join(parts) + "</doc>").encode()


def test_cert_issue_makes_a_certificate_the_master_accepts(tmp_path: Path) -> None:
    server = IndexServer(tmp_path / "tls-master", tls=True).start()
    try:
        result = esgf_ha(
            "cert",
            "issue",
            "--state-dir",
            str(server.state_dir),
            "--cn",
            "pub.example.org",
            "--json",
        )
        assert result.exit_code == 0, result.output
        paths = orjson.loads(result.stdout)
        assert Path(paths["ca"]) == server.ca.resolve()
        assert oct(Path(paths["key"]).stat().st_mode & 0o777) == "0o600"

        data = tmp_path / "data"
        make_samples(data, "CMIP6", 2, 22, "--files-per-version", "1")
        _, dry = publish(None, data, DATA_NODE, "--dry-run", str(data))
        legacy_entry, entry = dry["records"][0], dry["records"][1]

        def client(*cert: str) -> httpx.Client:
            ctx = ssl.create_default_context(cafile=str(server.ca))
            if cert:
                ctx.load_cert_chain(*cert)
            return httpx.Client(base_url=server.url, verify=ctx, timeout=30)

        with client() as anonymous:
            assert (
                anonymous.post(
                    "/esg-search/ws/publish", content=_doc_xml(entry["dataset"])
                ).status_code
                == 401
            )
            assert anonymous.post("/api/v1/publish", json={"datasets": [entry]}).status_code == 401
        with client(paths["pem"]) as legacy:
            r = legacy.post("/esg-search/ws/publish", content=_doc_xml(legacy_entry["dataset"]))
            assert r.status_code == 200, r.text
        with client(paths["cert"], paths["key"]) as batch:
            r = batch.post("/api/v1/publish", json={"datasets": [entry]})
            assert r.status_code == 200, r.text
        assert server.search(type="File")["response"]["numFound"] == len(entry["files"])
        assert server.search(type="Dataset")["response"]["numFound"] == 2

        # the whole publisher over HTTPS with the certificate (no token)
        result = esgf_ha(
            "publish",
            "--index",
            server.url,
            "--cacert",
            str(server.ca),
            "--cert",
            paths["pem"],
            "--data-node",
            "second.example.org",
            "--root",
            f"{ROOT_NAME}={data}",
            "--json",
            "--no-progress",
            str(data),
        )
        assert result.exit_code == 0, result.output
        assert docs(server, type="Dataset", data_node="second.example.org")

        # without the CA the server certificate cannot be verified: a clear error, no retries
        result = esgf_ha(
            "publish", "--index", server.url, "--cert", paths["pem"], "--data-node", "third",
            "--root", f"{ROOT_NAME}={data}", "--json", "--no-progress", str(data),
        )  # fmt: skip
        assert result.exit_code == 1 and "--cacert" in result.stdout

        # a certificate from another federation CA is refused
        other = esgf_ha(
            "cert", "issue", "--state-dir", str(tmp_path / "other"), "--cn", "x", "--json"
        )
        stranger = orjson.loads(other.stdout)["pem"]
        with pytest.raises(httpx.HTTPError), client(stranger) as c:
            r = c.post("/api/v1/publish", json={"datasets": [entry]})
            if r.status_code == 401:  # refused after the handshake instead of during it
                raise httpx.HTTPError("401")
        bad = esgf_ha("cert", "issue", "--state-dir", str(tmp_path), "--cn", "../evil")
        assert bad.exit_code == 2
    finally:
        server.stop()
