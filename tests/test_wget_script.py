"""The generated wget script, run with bash and real wget against a file server holding the
sample files: downloads, checksum verification, failure report, resume and re-run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.fileserver import RangeFileServer
from tests.servers import IndexServer

pytestmark = pytest.mark.skipif(
    shutil.which("wget") is None, reason="wget is installed by make test"
)


@pytest.fixture
def setup(tmp_path: Path, index_server: IndexServer):
    served = tmp_path / "served"
    files_root = served / "thredds" / "fileServer" / "esg_dataroot"
    with RangeFileServer(served) as fs:
        samples = cmip6_samples(3, seed=7, data_node=f"127.0.0.1:{fs.port}", url_base=fs.base)
        for s in samples:
            for publish_path, body in s.bodies.items():
                path = files_root / publish_path.split("/", 1)[1]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
        assert index_server.publish(as_batch(samples)).status_code == 200
        yield index_server, fs, samples, files_root, tmp_path / "work"


def get_script(server: IndexServer, **params: str) -> str:
    with server.client() as c:
        r = c.get("/esg-search/wget", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/x-sh")
    assert "attachment; filename=wget-" in r.headers["content-disposition"]
    return r.text


def run(script: str, work: Path, *args: str) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    (work / "wget.sh").write_text(script)
    return subprocess.run(
        ["bash", "wget.sh", *args], cwd=work, capture_output=True, text=True, timeout=120
    )


def test_script_downloads_and_verifies(setup) -> None:
    server, fs, samples, _, work = setup
    dataset = samples[0].dataset
    script = get_script(server, dataset_id=str(dataset["id"]))
    assert "# ESG Federation download script" in script
    assert f"# Search URL: {server.url}/esg-search/wget" in script
    result = run(script, work)
    assert result.returncode == 0, result.stderr
    assert "0 failed" in result.stdout
    for name, body in ((p.rsplit("/", 1)[1], b) for p, b in samples[0].bodies.items()):
        assert (work / name).read_bytes() == body
    # a second run verifies nothing new and downloads nothing
    before = len(fs.requests)
    again = run(script, work)
    assert again.returncode == 0 and len(fs.requests) == before


def test_corrupt_file_is_reported(setup) -> None:
    server, fs, samples, files_root, work = setup
    victim = next(iter(samples[1].bodies))
    (files_root / victim.split("/", 1)[1]).write_bytes(b"corrupted bytes")
    script = get_script(server, dataset_id=str(samples[1].dataset["id"]))
    result = run(script, work)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and victim.rsplit("/", 1)[1] in result.stderr
    assert "1 failed" in result.stdout


def test_partial_file_is_resumed(setup) -> None:
    server, fs, samples, _, work = setup
    publish_path, body = next(iter(samples[2].bodies.items()))
    name = publish_path.rsplit("/", 1)[1]
    work.mkdir(parents=True, exist_ok=True)
    (work / name).write_bytes(body[: len(body) // 2])
    script = get_script(server, dataset_id=str(samples[2].dataset["id"]))
    result = run(script, work)
    assert result.returncode == 0, result.stderr
    assert (work / name).read_bytes() == body
    ranges = [r for m, p, r in fs.requests if p.endswith(name)]
    assert ranges and ranges[0] == f"bytes={len(body) // 2}-"


def test_download_structure_and_dry_run(setup) -> None:
    server, _, samples, _, work = setup
    script = get_script(server, project="CMIP6", download_structure="source_id,variable_id")
    result = run(script, work, "-n")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if "<-" in line]
    # the same file name in two versions lands on one path: esg-search keeps the first
    targets = {
        f"{f['source_id']}/{f['variable_id']}/{f['title']}" for s in samples for f in s.files
    }
    assert sorted(line.split("  <-  ")[0] for line in lines) == sorted(targets)
    first = samples[0].dataset
    assert any(line.startswith(f"{first['source_id']}/{first['variable_id']}/") for line in lines)
    assert not list(work.glob("*.nc"))


def test_token_is_sent_when_given(tmp_path: Path, index_server: IndexServer) -> None:
    served = tmp_path / "served"
    with RangeFileServer(served, token="s3cret") as fs:
        sample = cmip6_samples(1, seed=9, data_node=f"127.0.0.1:{fs.port}", url_base=fs.base)[0]
        for publish_path, body in sample.bodies.items():
            path = served / "thredds/fileServer/esg_dataroot" / publish_path.split("/", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        assert index_server.publish(as_batch([sample])).status_code == 200
        script = get_script(index_server, dataset_id=str(sample.dataset["id"]))
        denied = run(script, tmp_path / "w1")
        assert denied.returncode == 1
        allowed = run(script, tmp_path / "w2", "-t", "s3cret")
        assert allowed.returncode == 0, allowed.stderr


def test_wget_endpoint_edge_cases(index_server: IndexServer) -> None:
    with index_server.client(follow_redirects=False) as c:
        r = c.get("/esg-search/wget")
        assert r.status_code == 302 and "limit=1" in r.headers["location"]
        r = c.get("/esg-search/wget", params={"project": "nothing"})
        assert r.status_code == 200 and r.text == "No files were found that matched the query"
        r = c.get("/esg-search/wget", params={"type": "Dataset"})
        assert r.status_code == 400 and "fixed to value: 'File'" in r.text
        r = c.post("/esg-search/wget", data={"project": "nothing"})
        assert r.status_code == 200
