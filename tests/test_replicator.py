"""The data replicator against real services: a master index, real data nodes (one serving a
corrupted copy, one cut off mid-transfer by a network fault), and the replicator as a process."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from esgf_ha.records.build import FileInfo, build_records
from esgf_ha.records.drs import CMIP6
from esgf_ha.replicator.errors import SelectionError
from esgf_ha.replicator.receive import FLUSH_BYTES
from esgf_ha.replicator.selection import parse_query, parse_selection_text
from tests.faults import Proxy
from tests.servers import DataServer, IndexServer

ROOT = "esg_dataroot"
FACETS = {
    "mip_era": "CMIP6", "activity_drs": "CMIP", "activity_id": "CMIP", "institution_id": "NCAR",
    "source_id": "CESM2", "experiment_id": "historical", "member_id": "r1i1p1f1",
    "table_id": "Amon", "variable_id": "tas", "grid_label": "gn",
}  # fmt: skip


def write_version(root: Path, version: str, nfiles: int, size: int) -> list[FileInfo]:
    """Files of one dataset version at their DRS path under `root`."""
    directory = root / CMIP6.directory(FACETS, version)
    directory.mkdir(parents=True, exist_ok=True)
    infos = []
    for i in range(nfiles):
        name = f"tas_Amon_CESM2_historical_r1i1p1f1_gn_{1850 + 10 * i}01-{1859 + 10 * i}12.nc"
        data = os.urandom(size)
        (directory / name).write_bytes(data)
        infos.append(FileInfo(name, size, hashlib.sha256(data).hexdigest()))
    return infos


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


def batch(version: str, infos: list[FileInfo], node_url: str, *, replica: bool) -> dict:
    host = node_url.split("://", 1)[1]
    dataset, files = build_records(
        CMIP6, FACETS, version, infos, data_node=host, index_node="index.test",
        root_name=ROOT, url_base=node_url, replica=replica,
    )  # fmt: skip
    return {"datasets": [{"dataset": dataset, "files": files}]}


def replicate(tmp: Path, master: IndexServer, dest: DataServer, *extra: str,
              state: str = "repl") -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "esgf_ha", "replicate", "--state-dir", str(tmp / state),
         "--index", master.url, "--token", master.token("esgf:publish"), "--site", "new",
         "--root", f"{ROOT}={dest.roots[ROOT]}", "--data-node", dest.url,
         "--query", "project=CMIP6&variable_id=tas", "--json", *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def summary(run: subprocess.CompletedProcess[str]) -> dict:
    assert run.stdout.strip(), run.stderr[-3000:]
    return orjson.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture
def master(tmp_path: Path) -> Iterator[IndexServer]:
    server = IndexServer(tmp_path / "master").start()
    yield server
    server.stop()


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[DataServer]:
    (tmp_path / "dest").mkdir()
    node = DataServer(tmp_path / "dest-node", {ROOT: tmp_path / "dest"}).start()
    yield node
    node.stop()


# -- selection --------------------------------------------------------------------------------
def test_selection_files_and_queries() -> None:
    sel = parse_selection_text(
        "# monthly\nproject=CMIP6\nvariable_id=tas pr\nsource_id=CESM2,MIROC6\n"
        "experiment_id!=piControl  # not the control\n"
    )
    assert sel.params() == [
        ("project", "CMIP6"), ("variable_id", "tas"), ("variable_id", "pr"),
        ("source_id", "CESM2"), ("source_id", "MIROC6"), ("experiment_id!", "piControl"),
    ]  # fmt: skip
    assert parse_query("variable_id=tas&variable_id=pr&member_id!=r2").params() == [
        ("variable_id", "tas"), ("variable_id", "pr"), ("member_id!", "r2")
    ]  # fmt: skip
    for bad, why in (("", "selects nothing"), ("project CMIP6", ":1: expected facet=value"),
                     ("latest=false", "set by the replicator"), ("x y=1", "not a facet name"),
                     ("project=", "has no value")):  # fmt: skip
        with pytest.raises(SelectionError, match=why):
            parse_selection_text(bad, "sel.txt")


def test_cli_usage_errors(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "esgf_ha", "replicate", "--state-dir", str(tmp_path),
         "--index", "http://127.0.0.1:9", "--site", "s", "--root", "r=/tmp",
         "--data-node", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "exactly one of --selection" in run.stderr
    sel = tmp_path / "sel.txt"
    sel.write_text("type=File\n")
    run = subprocess.run(
        [sys.executable, "-m", "esgf_ha", "replicate", "--state-dir", str(tmp_path),
         "--index", "http://127.0.0.1:9", "--site", "s", "--root", "r=/tmp",
         "--data-node", "http://127.0.0.1:9", "--selection", str(sel)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1 and "'type' is set by the replicator" in run.stderr
    assert "Traceback" not in run.stderr


# -- failover between sources -----------------------------------------------------------------
def test_corrupt_and_dying_sources_end_verified_from_the_good_one_resumed(
    tmp_path: Path, master: IndexServer, destination: DataServer
) -> None:
    good_root, bad_root = tmp_path / "good", tmp_path / "bad"
    infos = write_version(good_root, "20200101", nfiles=2, size=3 << 20)
    copy_tree(good_root, bad_root)
    victim = bad_root / CMIP6.directory(FACETS, "20200101") / infos[0].name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, wrong checksum
    victim.write_bytes(bytes(data))
    # addresses chosen so the index lists the sources corrupt, dying, good: the order in which
    # an untried replicator tries them, so every failure path is taken before the good copy
    corrupt = DataServer(tmp_path / "n1", {ROOT: bad_root}, listen="127.0.2.1:0").start()
    good = DataServer(tmp_path / "n3", {ROOT: good_root}).start()
    good_port = int(good.url.rsplit(":", 1)[1])
    try:
        with (
            Proxy(("127.0.0.1", good_port), cut_after=1 << 20, address="127.0.2.2") as dying,
            Proxy(("127.0.0.1", good_port), address="127.0.2.3") as recorded,
        ):
            for url, replica in ((corrupt.url, False), (dying.url, True), (recorded.url, True)):
                r = master.publish(batch("20200101", infos, url, replica=replica))
                assert r.status_code == 200, r.text
            run = replicate(tmp_path, master, destination, "--per-host", "1")
            out = summary(run)
            assert run.returncode == 0 and out["ok"], run.stderr[-3000:]
            assert out["files_done"] == 2 and out["files_failed"] == 0
            # the victim file: refused from the corrupt node, cut off by the dying one, then
            # finished by the good node from where the cut left it
            resumed = [r for r in recorded.ranges() if r != "bytes=0-"]
            assert resumed, recorded.requests
            start = int(resumed[0].split("=")[1].rstrip("-"))
            assert 0 < start < infos[0].size
        placed = destination.roots[ROOT] / CMIP6.directory(FACETS, "20200101")
        for info in infos:
            body = (placed / info.name).read_bytes()
            assert hashlib.sha256(body).hexdigest() == info.checksum
        assert not list(destination.roots[ROOT].rglob("*.part"))
        status = subprocess.run(
            [sys.executable, "-m", "esgf_ha", "replicate", "status", "--state-dir",
             str(tmp_path / "repl"), "--json"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        state = orjson.loads(status.stdout)
        assert state["datasets"] == {"published": 1}
        # the replica records name the new site, with the same ids but for the data node
        docs = master.search(type="File", data_node=destination.host)["response"]["docs"]
        assert len(docs) == 2 and all(d["replica"] for d in docs)
        assert all(d["url"][0].startswith(destination.url + "/thredds/fileServer/") for d in docs)
    finally:
        corrupt.stop()
        good.stop()


def test_every_source_bad_marks_the_file_failed_with_reasons(
    tmp_path: Path, master: IndexServer, destination: DataServer
) -> None:
    root = tmp_path / "bad"
    infos = write_version(root, "20200101", nfiles=1, size=100_000)
    infos[0].checksum = "0" * 64  # no copy can match
    node = DataServer(tmp_path / "n", {ROOT: root}).start()
    try:
        master.publish(batch("20200101", infos, node.url, replica=False))
        run = replicate(tmp_path, master, destination, "--max-attempts", "3")
        out = summary(run)
        assert run.returncode == 1 and not out["ok"]
        (reasons,) = out["failed"].values()
        assert "SHA256 mismatch" in reasons[0]
        assert not list(destination.roots[ROOT].rglob("*.nc*"))  # nothing half-placed
        assert (
            master.search(type="Dataset", data_node=destination.host)["response"]["numFound"] == 0
        )
    finally:
        node.stop()


# -- kill -9 and restart ----------------------------------------------------------------------
def test_killed_replicator_restarts_without_duplicates(
    tmp_path: Path, master: IndexServer, destination: DataServer
) -> None:
    root = tmp_path / "src"
    per_host = 3  # transfers in flight when the replicator is killed
    # files of several flush units, so a killed transfer leaves part of each file on disk
    infos = write_version(root, "20200101", nfiles=4, size=6 << 20)
    node = DataServer(tmp_path / "n", {ROOT: root}).start()
    port = int(node.url.rsplit(":", 1)[1])
    try:
        with Proxy(("127.0.0.1", port), rate=2e6) as slow:
            master.publish(batch("20200101", infos, slow.url, replica=False))
            args = [sys.executable, "-m", "esgf_ha", "replicate", "--state-dir",
                    str(tmp_path / "repl"), "--index", master.url,
                    "--token", master.token("esgf:publish"), "--site", "new",
                    "--root", f"{ROOT}={destination.roots[ROOT]}", "--data-node", destination.url,
                    "--query", "variable_id=tas", "--json", "--per-host", str(per_host)]  # fmt: skip
            placed = destination.roots[ROOT] / CMIP6.directory(FACETS, "20200101")
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while slow.response_bytes < 6 << 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            # its output is never read: our ends of its pipes are closed, not left to the GC
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            time.sleep(0.3)  # the proxy notices the dead connections before we count
            sent_before_kill = slow.response_bytes
            assert sent_before_kill < 16 << 20, "killed too late to test a restart"
            kept = sum(p.stat().st_size for p in placed.glob("*.nc*"))
            # a kill loses at most what each transfer held in memory (a flush unit) and what sat
            # in socket buffers, plus its response head
            lost = sent_before_kill - kept
            assert kept > 0 and lost <= per_host * (FLUSH_BYTES + 256 * 1024 + 2048), (kept, lost)
            run = subprocess.run(args, capture_output=True, text=True, timeout=120)
            out = summary(run)
            assert run.returncode == 0 and out["ok"], run.stderr[-2000:]
            # nothing on disk is fetched again: the restart asks only for the missing bytes
            # (plus a response head per request)
            total = sum(i.size for i in infos)
            fetched_again = slow.response_bytes - sent_before_kill
            assert fetched_again <= total - kept + 8 * 2048, (fetched_again, total, kept)
            assert any(slow.ranges()), "nothing was resumed"
        assert sorted(p.name for p in placed.iterdir()) == sorted(i.name for i in infos)
        docs = master.search(type="Dataset", data_node=destination.host)["response"]["docs"]
        assert len(docs) == 1 and docs[0]["number_of_files"] == 4
        files = master.search(type="File", data_node=destination.host, limit=100)
        assert files["response"]["numFound"] == 4
    finally:
        node.stop()


# -- new versions and retractions -------------------------------------------------------------
def test_new_version_and_retraction(
    tmp_path: Path, master: IndexServer, destination: DataServer
) -> None:
    root = tmp_path / "src"
    v1 = write_version(root, "20200101", nfiles=2, size=50_000)
    v2 = write_version(root, "20210101", nfiles=3, size=50_000)
    node = DataServer(tmp_path / "n", {ROOT: root}).start()
    try:
        master.publish(batch("20200101", v1, node.url, replica=False))
        assert summary(replicate(tmp_path, master, destination))["published"]
        master.publish(batch("20210101", v2, node.url, replica=False))
        out = summary(replicate(tmp_path, master, destination, "--remove-old-versions"))
        assert [p.rsplit(".", 1)[1] for p in out["published"]] == ["v20210101"]
        assert [p.rsplit(".", 1)[1] for p in out["removed_old"]] == ["v20200101"]
        dest = destination.roots[ROOT]
        assert not (dest / CMIP6.directory(FACETS, "20200101")).exists() or not list(
            (dest / CMIP6.directory(FACETS, "20200101")).iterdir()
        )
        assert len(list((dest / CMIP6.directory(FACETS, "20210101")).iterdir())) == 3
        mine = master.search(type="Dataset", data_node=destination.host, fields="version,latest")
        assert [(d["version"], d["latest"]) for d in mine["response"]["docs"]] == [
            ("20210101", True)
        ]

        # the origin retracts v2: our copy is quarantined and our replica record retracted
        original = f"{CMIP6.master_id(FACETS)}.v20210101|{node.host}"
        with master.client() as c:
            r = c.post("/api/v1/retract", json={"ids": [original]}, headers=master.auth())
        assert r.status_code == 200, r.text
        out = summary(replicate(tmp_path, master, destination))
        assert [p.rsplit(".", 1)[1] for p in out["retracted"]] == ["v20210101"]
        assert not list((dest / CMIP6.directory(FACETS, "20210101")).glob("*.nc"))
        assert len(list((tmp_path / "repl" / "quarantine").rglob("*.nc"))) == 3
        mine = master.search(type="Dataset", data_node=destination.host, retracted="true")
        assert mine["response"]["numFound"] == 1
        # and a later pass does not fetch the retracted version again
        again = summary(replicate(tmp_path, master, destination))
        assert again["queued"] == [] and again["files_done"] == 0
    finally:
        node.stop()


# -- a real client uses the replica -----------------------------------------------------------
def test_esgpull_downloads_the_replica_from_the_new_site(
    tmp_path: Path, master: IndexServer
) -> None:
    esgpull = (
        Path(__file__).resolve().parent.parent / ".venv-clients" / "esgpull" / "bin" / "python"
    )
    assert esgpull.exists(), "built by `make clients-setup`"
    root = tmp_path / "src"
    infos = write_version(root, "20200101", nfiles=3, size=200_000)
    (tmp_path / "dest").mkdir()
    # esgpull only downloads over HTTPS: the new site serves TLS with its own CA
    dest = DataServer(tmp_path / "dest-node", {ROOT: tmp_path / "dest"}, tls=True).start()
    origin = DataServer(tmp_path / "n", {ROOT: root}).start()
    try:
        master.publish(batch("20200101", infos, origin.url, replica=False))
        run = replicate(tmp_path, master, dest, "--ca-file", str(dest.ca))
        assert summary(run)["ok"], run.stderr[-2000:]
        origin.stop()  # only the new site can serve the files now
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["SSL_CERT_FILE"] = str(dest.ca)
        # replica=true, not data_node=<host:port>: esgpull puts values unescaped into a Lucene
        # query, and the port's colon makes that a syntax error (as it would be for Solr)
        client = subprocess.run(
            [str(esgpull), str(Path(__file__).parent / "clients" / "drive_esgpull_download.py"),
             master.url, "--workdir", str(tmp_path / "esgpull"),
             "--selection", orjson.dumps({"variable_id": "tas", "replica": "true"}).decode()],
            capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert client.stdout.strip(), client.stderr[-3000:]
        out = orjson.loads(client.stdout.strip().splitlines()[-1])
        files = out["files"]
        assert len(files) == 3, out
        by_name = {i.name: i for i in infos}
        for f in files:
            assert f["status"] == "ok" and f["url"].startswith(dest.url), f
            name = Path(f["local_path"]).name
            assert hashlib.sha256(Path(f["local_path"]).read_bytes()).hexdigest() == (
                by_name[name].checksum
            )
    finally:
        origin.stop()
        dest.stop()
