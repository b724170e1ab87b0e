"""`esgf-ha publish` against a real master on a loopback port: records, idempotence,
versions, mapfiles, bad input, retract/delete, an unreachable or restarting master."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import netCDF4
import pytest

from esgf_ha.publisher.checksums import file_checksum
from esgf_ha.records.drs import PROJECTS
from tests.publisher_helpers import (
    ROOT_NAME,
    docs,
    esgf_ha,
    holdings,
    http_url,
    make_samples,
    one,
    publish,
    publish_process,
    seq,
    sha256,
)
from tests.servers import IndexServer, free_port


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    """One master for the module; each test publishes under its own data node."""
    server = IndexServer(tmp_path_factory.mktemp("pub") / "master").start()
    yield server
    server.stop()


def dataset_dirs(data: Path) -> dict[str, list[Path]]:
    """master_id-ish key (the directory above the versions) -> sorted version directories."""
    out: dict[str, list[Path]] = {}
    for vdir in sorted(p for p in data.rglob("v*") if p.is_dir() and p.name[1:].isdigit()):
        out.setdefault(str(vdir.parent), []).append(vdir)
    return out


def test_publish_builds_records_as_esgcet_and_is_idempotent(master: IndexServer, tmp_path: Path):
    data, node = tmp_path / "data", "dn-records.example.org"
    make_samples(data, "CMIP6", 3, 11)
    make_samples(data, "CMIP5", 2, 11)
    files = sorted(data.rglob("*.nc"))
    versions = sum(len(v) for v in dataset_dirs(data).values())

    code, summary = publish(master, data, node, str(data))
    assert code == 0, summary
    assert summary["ok"] and not summary["failed"] and not summary["file_errors"]
    assert len(summary["published"]) == versions and summary["files"] == len(files)

    found = docs(master, type="File", data_node=node)
    assert len(found) == len(files)
    by_title = {d["title"]: d for d in found}
    for path in files:
        rel = path.relative_to(data).as_posix()
        doc = next(d for d in found if one(d, "publish_path") == f"{ROOT_NAME}/{rel}")
        assert doc["size"] == path.stat().st_size
        assert doc["checksum"] == [sha256(path)] and doc["checksum_type"] == ["SHA256"]
        assert http_url(doc) == f"https://{node}/thredds/fileServer/{ROOT_NAME}/{rel}"
        with netCDF4.Dataset(path) as nc:
            assert doc["tracking_id"] == [nc.tracking_id]
        assert doc["replica"] is False
        assert doc["instance_id"] == doc["dataset_id"].split("|")[0] + "." + path.name
    assert by_title  # titles are file names

    datasets = docs(master, type="Dataset", data_node=node)
    assert len(datasets) == versions
    for ds in datasets:
        children = docs(master, type="File", dataset_id=ds["id"])
        assert ds["number_of_files"] == len(children) > 0
        assert ds["size"] == sum(c["size"] for c in children)
        assert ds["access"] == ["HTTPServer"]
        assert ds["id"] == f"{ds['instance_id']}|{node}"
        assert ds["instance_id"] == f"{ds['master_id']}.v{ds['version']}"
        assert ds["directory_format_template_"][0].startswith("%(root)s/")
        assert ds["datetime_start"] < ds["datetime_stop"]
        if ds["project"] == ["CMIP6"]:
            parts = ds["master_id"].split(".")
            assert [ds[f][0] for f in ("mip_era", "activity_drs", "source_id", "variable_id")] == [
                parts[0],
                parts[1],
                parts[3],
                parts[7],
            ]
            assert ds["pid"][0].startswith("hdl:21.14100/")
        else:
            assert ds["master_id"].startswith("cmip5.output1.")
            assert sorted(ds["variable"]) == ["pr", "tas"]
    # the newest version of each dataset is the latest one
    newest: dict[str, str] = {}
    for ds in datasets:
        newest[ds["master_id"]] = max(newest.get(ds["master_id"], ""), ds["version"])
    for ds in datasets:
        assert ds["latest"] is (ds["version"] == newest[ds["master_id"]])
    latest = docs(master, type="Dataset", data_node=node, latest="true")
    assert len(latest) == len(dataset_dirs(data))

    # unchanged files: nothing changes, not even the change log
    before = seq(master)
    code, again = publish(master, data, node, str(data))
    assert code == 0 and again["published"] == [] and len(again["unchanged"]) == versions
    assert seq(master) == before


CMIP6_COPIED = ("frequency", "realm", "activity_id", "variant_label", "nominal_resolution")


def test_records_do_not_depend_on_the_number_of_worker_processes(
    master: IndexServer, tmp_path: Path
):
    """CMIP6 and CMIP5 dataset versions in one tree, enough files for the worker pool; one
    worker and four give the same records, field by field, as the index holds them."""
    data = tmp_path / "data"
    make_samples(data, "CMIP6", 10, 21)
    make_samples(data, "CMIP5", 5, 21)
    files = sorted(data.rglob("*.nc"))
    assert len(files) >= 64  # the worker pool starts from 64 files
    versions = sum(len(v) for v in dataset_dirs(data).values())
    held = {}
    for jobs in (1, 4):
        node = f"dn-jobs{jobs}.example.org"
        code, summary, _ = publish_process(master, data, node, "--jobs", str(jobs), str(data))
        assert code == 0, summary
        assert len(summary["published"]) == versions and summary["files"] == len(files)
        held[jobs] = holdings(master, node)
    assert len(held[1]) == versions + len(files)
    assert held[4].keys() == held[1].keys()
    for key, record in held[1].items():
        assert held[4][key] == record, key
    for key, record in held[4].items():
        if not key.startswith("Dataset:"):
            continue
        if record["project"] == ["CMIP6"]:
            assert all(record.get(f) for f in CMIP6_COPIED), (key, record)
            assert record["variable"] == record["variable_id"], key
            assert "drs_id" not in record and "format" not in record, key
        else:
            assert sorted(record["variable"]) == ["pr", "tas"], key
            assert record["drs_id"] == [record["master_id"]], key
    # facet searches find every CMIP6 dataset version either way
    cmip6 = [
        r for k, r in held[1].items() if k.startswith("Dataset:") and r["project"] == ["CMIP6"]
    ]
    for facet in ("frequency", "variant_label", "nominal_resolution"):
        values = {one(r, facet) for r in cmip6}
        for node in ("dn-jobs1.example.org", "dn-jobs4.example.org"):
            found = sum(
                len(docs(master, type="Dataset", data_node=node, **{facet: v})) for v in values
            )
            assert found == len(cmip6), (node, facet)


def _set_tracking_id(path: Path, value: str) -> None:
    with netCDF4.Dataset(path, "a") as nc:
        nc.tracking_id = value


def test_files_sharing_a_tracking_id_publish_with_a_warning(master: IndexServer, tmp_path: Path):
    """Time-split files of one dataset version written with the same tracking_id (as in
    published CMIP6 data) publish, with a warning in --json and on stderr; a copy of a file
    under another name (same tracking_id and checksum) is still refused."""
    data, node = tmp_path / "data", "dn-dup-tid.example.org"
    make_samples(data, "CMIP6", 3, 31, "--files-per-version", "3")
    make_samples(data, "CMIP5", 1, 31, "--files-per-version", "2")
    newest = [v[-1] for v in dataset_dirs(data).values()]
    cmip6 = [v for v in newest if "CMIP6" in v.parts]
    cmip5 = next(v for v in newest if "cmip5" in v.parts)
    # CMIP6: the second and third files carry the tracking_id of the first
    shared_dir = cmip6[0]
    first, *rest = sorted(shared_dir.glob("*.nc"))
    with netCDF4.Dataset(first) as nc:
        shared = nc.tracking_id
    for path in rest:
        _set_tracking_id(path, shared)
    # CMIP5: the two time-split files of one variable share one
    tas = sorted((cmip5 / "tas").glob("*.nc"))
    with netCDF4.Dataset(tas[0]) as nc:
        _set_tracking_id(tas[1], nc.tracking_id)
    # what really is wrong: the same file twice, under the name of another time range
    copied_dir = cmip6[1]
    a, b = sorted(copied_dir.glob("*.nc"))[:2]
    shutil.copy(a, b)

    code, summary, stderr = publish_process(master, data, node, str(data))
    assert code == 1, summary  # the copied file's dataset version fails
    warned = sorted(w["path"] for w in summary["warnings"])
    assert warned == sorted(str(p) for p in [*rest, tas[1]]), summary["warnings"]
    assert {w["kind"] for w in summary["warnings"]} == {"DuplicateTrackingId"}
    assert all(shared in w["warning"] for w in summary["warnings"] if "CMIP6" in w["path"])
    for path in [*rest, tas[1]]:
        assert f"warning DuplicateTrackingId: {path}:" in stderr
    (error,) = summary["file_errors"]
    assert error["kind"] == "DRSMismatch" and error["path"] == str(b)
    assert "same tracking_id, size and checksum" in error["error"]
    assert [f["dataset"].split("|")[0] for f in summary["failed"]] == [
        ".".join(copied_dir.relative_to(data).parts)
    ]

    shared_id = ".".join(shared_dir.relative_to(data).parts)
    (ds,) = docs(master, type="Dataset", data_node=node, instance_id=shared_id)
    children = docs(master, type="File", dataset_id=ds["id"])
    assert ds["number_of_files"] == len(children) == 3
    assert {c["tracking_id"][0] for c in children} == {shared}
    assert len(docs(master, type="File", data_node=node, tracking_id=shared)) == 3
    assert not docs(
        master,
        type="Dataset",
        data_node=node,
        instance_id=".".join(copied_dir.relative_to(data).parts),
    )

    # a mapfile written from these files publishes them the same way, with the warning
    shutil.rmtree(copied_dir.parent)
    result = esgf_ha("mapfile", "--root", f"{ROOT_NAME}={data}", str(data))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning DuplicateTrackingId:") == 3
    mapfile = tmp_path / "all.map"
    mapfile.write_text(result.stdout)
    code, again = publish(master, data, node, "--mapfile", str(mapfile))
    assert code == 0 and again["ok"] and not again["published"], again
    assert len(again["unchanged"]) == sum(len(v) for v in dataset_dirs(data).values())
    assert sorted(w["path"] for w in again["warnings"]) == warned


def test_default_index_node_is_the_bare_host_name(master: IndexServer, tmp_path: Path):
    data, node = tmp_path / "data", "dn-index-node.example.org"
    make_samples(data, "CMIP6", 1, 41, "--files-per-version", "2")
    code, summary = publish(master, data, node, str(data))
    assert code == 0, summary
    host = master.url.split("://", 1)[1].rsplit(":", 1)[0]
    records = docs(master, data_node=node, type="Dataset") + docs(
        master, data_node=node, type="File"
    )
    assert records and {one(r, "index_node") for r in records} == {host}
    code, summary = publish(
        master, data, "dn-index-node2.example.org", "--index-node", "idx.example.org", str(data)
    )
    assert code == 0, summary
    named = docs(master, type="Dataset", data_node="dn-index-node2.example.org")
    assert named and {one(ds, "index_node") for ds in named} == {"idx.example.org"}


def test_root_reached_through_a_symlink(master: IndexServer, tmp_path: Path):
    """`--root /data` where /data is a link to the volume (as on many data nodes, and as
    site-packages is in a virtualenv that is a link): the files are inside the root."""
    volume, link = tmp_path / "volume", tmp_path / "data"
    make_samples(volume, "CMIP6", 2, 51, "--files-per-version", "2")
    link.symlink_to(volume)
    node = "dn-linked-root.example.org"
    code, summary = publish(master, link, node, str(link / "CMIP6"))
    assert code == 0 and not summary["file_errors"], summary
    assert summary["files"] == len(list(volume.rglob("*.nc")))
    paths = {one(f, "publish_path") for f in docs(master, type="File", data_node=node)}
    assert paths == {
        f"{ROOT_NAME}/{p.relative_to(volume).as_posix()}" for p in volume.rglob("*.nc")
    }
    # a link inside the root that leads out of it is still refused
    victim = sorted(volume.rglob("*.nc"))[0]
    outside = tmp_path / victim.name
    shutil.move(victim, outside)
    victim.symlink_to(outside)
    code, summary = publish(master, link, "dn-linked-root2.example.org", str(link / "CMIP6"))
    assert code == 1 and [e["kind"] for e in summary["file_errors"]] == ["OutsideRoot"], summary


def test_a_file_named_twice_is_published_once(tmp_path: Path):
    """Overlapping paths or a repeated mapfile line name the same file twice: it is one file
    (not two files sharing a tracking_id, nor a copy); two mapfile lines for one file that
    disagree are refused."""
    data, node = tmp_path / "data", "dn-twice.example.org"
    make_samples(data, "CMIP6", 2, 61, "--files-per-version", "2")
    files = sorted(data.rglob("*.nc"))
    code, once = publish(None, data, node, "--dry-run", str(data))
    assert code == 0
    inner = files[0].parents[4]  # an experiment directory inside the tree
    code, twice = publish(None, data, node, "--dry-run", str(data), str(inner), str(files[0]))
    assert code == 0 and not twice["warnings"] and not twice["file_errors"], twice
    assert twice["records"] == once["records"]

    result = esgf_ha("mapfile", "--root", f"{ROOT_NAME}={data}", str(data))
    lines = result.stdout.splitlines()
    repeated = tmp_path / "repeated.map"
    repeated.write_text("\n".join(lines + lines[:1]) + "\n")
    code, mapped = publish(None, data, node, "--dry-run", "--mapfile", str(repeated))
    assert code == 0 and mapped["records"] == once["records"], mapped
    head, path, size, mtime, *rest = lines[0].split(" | ")
    conflicting = tmp_path / "conflicting.map"
    other = " | ".join([head, path, size, "mod_time=1.0", *rest])
    conflicting.write_text("\n".join([*lines, other]) + "\n")
    code, refused = publish(None, data, node, "--dry-run", "--mapfile", str(conflicting))
    assert code == 1, refused
    assert [e["path"] for e in refused["file_errors"]] == [path]
    assert "listed twice" in refused["file_errors"][0]["error"]
    assert len(refused["failed"]) == 1


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_projects_come_back_from_a_worker_process_as_themselves(name: str):
    """What the file-reading workers send back names the project; the parent gets its own
    project object, so any comparison (`is` or `==`) holds."""
    project = PROJECTS[name]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(copy.copy, project).result() is project
    assert pickle.loads(pickle.dumps(project)) is project


def test_new_version_directory_becomes_latest(master: IndexServer, tmp_path: Path):
    data, node = tmp_path / "data", "dn-versions.example.org"
    make_samples(data, "CMIP6", 1, 12, "--files-per-version", "2")
    ((key, vdirs),) = dataset_dirs(data).items()
    code, _ = publish(master, data, node, str(data))
    assert code == 0
    newer = vdirs[-1].parent / "v20300101"
    shutil.copytree(vdirs[-1], newer)
    code, summary = publish(master, data, node, str(data))
    assert code == 0, summary
    assert [p.split("|")[0].rsplit(".", 1)[1] for p in summary["published"]] == ["v20300101"]
    (latest,) = docs(master, type="Dataset", data_node=node, latest="true")
    assert latest["version"] == "20300101"
    older = docs(master, type="Dataset", data_node=node, latest="false")
    assert {d["version"] for d in older} == {v.name[1:] for v in vdirs}
    assert all(
        not f["latest"] for d in older for f in docs(master, type="File", dataset_id=d["id"])
    )


def test_mapfile_round_trip_publishes_without_rescanning(master: IndexServer, tmp_path: Path):
    data, node = tmp_path / "data", "dn-mapfile.example.org"
    make_samples(data, "CMIP6", 2, 13, "--files-per-version", "3")
    result = esgf_ha("mapfile", "--root", f"{ROOT_NAME}={data}", str(data))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    files = sorted(data.rglob("*.nc"))
    assert len(lines) == len(files)
    for line in lines:
        head, path, size, mtime, checksum, kind, tracking = line.split(" | ")
        assert head.startswith("CMIP6.") and head.rsplit(".", 1)[1].startswith("v")
        assert Path(path).is_absolute() and int(size) == Path(path).stat().st_size
        assert mtime.startswith("mod_time=") and kind == "checksum_type=SHA256"
        assert checksum == f"checksum={sha256(Path(path))}"
        with netCDF4.Dataset(path) as nc:
            assert tracking == f"tracking_id={nc.tracking_id}"

    outdir = tmp_path / "maps"
    result = esgf_ha("mapfile", "--root", f"{ROOT_NAME}={data}", "--outdir", str(outdir), str(data))
    assert result.exit_code == 0, result.output
    maps = sorted(outdir.glob("*.map"))
    assert len(maps) == sum(len(v) for v in dataset_dirs(data).values())
    assert sorted(ln for m in maps for ln in m.read_text().splitlines()) == sorted(lines)

    # the same records whether scanned or read from the mapfile
    combined = tmp_path / "all.map"
    combined.write_text("\n".join(lines) + "\n")
    _, scanned = publish(None, data, node, "--dry-run", str(data))
    _, mapped = publish(None, data, node, "--dry-run", "--mapfile", str(combined))
    assert mapped["records"] == scanned["records"]

    # the mapfile's checksum is used as is: nothing is hashed again
    fake = "0" * 64
    first = lines[0].split(" | ")
    doctored = tmp_path / "doctored.map"
    doctored.write_text(" | ".join([*first[:4], f"checksum={fake}", *first[5:]]) + "\n")
    _, one = publish(None, data, node, "--dry-run", "--mapfile", str(doctored))
    assert one["records"][0]["files"][0]["checksum"] == [fake]

    # a file changed since the mapfile was written is refused, and fails its dataset
    victim = Path(lines[1].split(" | ")[1])
    victim.write_bytes(victim.read_bytes() + b"\0")
    code, changed = publish(None, data, node, "--dry-run", "--mapfile", str(combined))
    assert code == 1
    assert [e["kind"] for e in changed["file_errors"]] == ["Unreadable"]
    assert "changed since the mapfile was written" in changed["file_errors"][0]["error"]
    assert len(changed["failed"]) == 1
    victim.write_bytes(victim.read_bytes()[:-1])
    # a middle file is not opened again: its tracking_id is checked as the mapfile gives it
    three = maps[0].read_text().splitlines()
    bad_tid = tmp_path / "bad-tracking.map"
    for i, problem in ((1, "is not hdl:21.14100/<uuid>"), (2, "differs from the file's")):
        doctored_lines = list(three)
        doctored_lines[i] = three[i].rsplit(" | ", 1)[0] + " | tracking_id=hdl:21.14100/nope"
        bad_tid.write_text("\n".join(doctored_lines) + "\n")
        code, wrong = publish(None, data, node, "--dry-run", "--mapfile", str(bad_tid))
        assert code == 1 and problem in wrong["file_errors"][0]["error"], wrong

    code, summary = publish(master, data, node, *(a for m in maps for a in ("--mapfile", str(m))))
    assert code == 0 and len(summary["published"]) == len(maps), summary
    assert len(docs(master, type="File", data_node=node)) == len(files)


def test_bad_files_fail_their_dataset_only(master: IndexServer, tmp_path: Path):
    data, node = tmp_path / "data", "dn-bad.example.org"
    make_samples(data, "CMIP6", 7, 14, "--files-per-version", "2")
    newest = [v[-1] for v in dataset_dirs(data).values()]
    assert len(newest) == 7
    broken: dict[str, Path] = {}

    def first_file(vdir: Path) -> Path:
        return sorted(vdir.glob("*.nc"))[0]

    # not netCDF
    target = first_file(newest[0])
    target.write_bytes(b"this is not a netCDF file\n" * 10)
    broken["NotNetCDF"] = newest[0]
    # a required attribute missing
    with netCDF4.Dataset(first_file(newest[1]), "a") as nc:
        nc.delncattr("tracking_id")
    broken["MissingAttribute"] = newest[1]
    # attributes disagree with the path
    with netCDF4.Dataset(first_file(newest[2]), "a") as nc:
        nc.source_id = "SOME-OTHER-MODEL"
    broken["DRSMismatch"] = newest[2]
    # a symlink leaving the root
    outside = tmp_path / "outside.nc"
    shutil.copy(first_file(newest[3]), outside)
    link = first_file(newest[3])
    link.unlink()
    link.symlink_to(outside)
    broken["OutsideRoot"] = newest[3]
    # unreadable: a dangling link (we run as root, so permissions cannot stop a read)
    dangling = first_file(newest[4])
    dangling.unlink()
    dangling.symlink_to(newest[4] / "gone.nc.missing")
    broken["Unreadable"] = newest[4]
    # a file name that does not match its directory
    first_file(newest[5]).rename(newest[5] / "wrong_name_185001-185012.nc")
    broken["NotDRS"] = newest[5]

    code, summary = publish(master, data, node, str(data))
    assert code == 1
    assert not summary["ok"]
    kinds = {e["kind"] for e in summary["file_errors"]}
    assert kinds == set(broken), summary["file_errors"]
    for err in summary["file_errors"]:
        assert err["error"] and err["path"]
    assert len(summary["failed"]) == len(broken)
    failed = {f["dataset"].split("|")[0] for f in summary["failed"]}
    published_ids = {d["instance_id"] for d in docs(master, type="Dataset", data_node=node)}
    published_paths = {one(f, "publish_path") for f in docs(master, type="File", data_node=node)}
    for vdir in broken.values():
        rel = vdir.relative_to(data).as_posix()
        instance = ".".join(vdir.relative_to(data).parts)
        assert instance in failed
        assert instance not in published_ids
        # no half-published dataset: none of the broken version's files is in the index
        assert not any(p.startswith(f"{ROOT_NAME}/{rel}/") for p in published_paths), rel
    # the healthy dataset versions are all there, whole
    good = [v for vs in dataset_dirs(data).values() for v in vs if v not in broken.values()]
    assert good
    for vdir in good:
        rel = vdir.relative_to(data).as_posix()
        n = len(list(vdir.glob("*.nc")))
        assert sum(p.startswith(f"{ROOT_NAME}/{rel}/") for p in published_paths) == n, rel
        assert ".".join(vdir.relative_to(data).parts) in published_ids
    assert len(published_ids) == len(good)


def test_conflicting_republish_is_refused_and_others_still_publish(
    master: IndexServer, tmp_path: Path
):
    data, node = tmp_path / "data", "dn-conflict.example.org"
    make_samples(data, "CMIP6", 2, 15, "--files-per-version", "2")
    assert publish(master, data, node, str(data))[0] == 0
    # rewrite one file of an already published version with other data (same name)
    vdir = next(iter(dataset_dirs(data).values()))[-1]
    path = sorted(vdir.glob("*.nc"))[0]
    with netCDF4.Dataset(path, "a") as nc:
        var = nc.variables[nc.variable_id]
        var[0, 0, 0] = var[0, 0, 0] + 1
    code, summary = publish(master, data, node, str(data))
    assert code == 1
    (fail,) = summary["failed"]
    assert fail["dataset"].startswith(
        vdir.relative_to(data).as_posix().replace("/", ".").rsplit(".", 1)[0]
    )
    assert "409" in fail["error"] and "new version" in fail["error"]
    assert len(summary["unchanged"]) == sum(len(v) for v in dataset_dirs(data).values()) - 1


def test_md5_dry_run_and_usage_errors(tmp_path: Path):
    data = tmp_path / "data"
    make_samples(data, "CMIP5", 1, 16, "--files-per-version", "1")
    code, summary = publish(
        None, data, "dn.example.org", "--dry-run", "--checksum-type", "md5", str(data)
    )
    assert code == 0 and summary["dry_run"]
    for entry in summary["records"]:
        for f in entry["files"]:
            path = data / one(f, "publish_path").split("/", 1)[1]
            assert f["checksum"] == [file_checksum(path, "MD5")] and f["checksum_type"] == ["MD5"]
    _, opendap = publish(None, data, "dn.example.org", "--dry-run", "--opendap", str(data))
    entry = opendap["records"][0]
    assert entry["dataset"]["access"] == ["HTTPServer", "OPENDAP"]
    rel = one(entry["files"][0], "publish_path")
    assert entry["files"][0]["url"][1] == (
        f"https://dn.example.org/thredds/dodsC/{rel}.html|application/opendap-html|OPENDAP"
    )
    no_token = esgf_ha(
        "publish",
        "--index",
        "http://127.0.0.1:9",
        "--data-node",
        "d",
        "--root",
        f"x={data}",
        str(data),
    )
    assert no_token.exit_code == 2 and "--token" in no_token.output
    bad_root = esgf_ha("publish", "--dry-run", "--data-node", "d", "--root", str(data), str(data))
    assert bad_root.exit_code == 2 and "NAME=PATH" in bad_root.output
    bad_map = tmp_path / "bad.map"
    bad_map.write_text("CMIP6.a.b | relative/path.nc | 12\n")
    result = esgf_ha(
        "publish", "--dry-run", "--data-node", "d", "--root", f"x={data}", "--mapfile", str(bad_map)
    )
    assert result.exit_code == 1 and "bad.map:1" in result.output
    (tmp_path / "empty").mkdir()
    empty = esgf_ha(
        "publish", "--dry-run", "--json", "--data-node", "d", "--root", f"x={tmp_path}",
        str(tmp_path / "empty"),
    )  # fmt: skip
    assert empty.exit_code == 1 and "holds no *.nc files" in empty.stdout
    outside = esgf_ha(
        "publish",
        "--dry-run",
        "--json",
        "--data-node",
        "d",
        "--root",
        f"x={data / 'cmip5'}",
        str(data),
    )
    assert outside.exit_code == 1 and "NotDRS" in outside.stdout


def test_bad_token_and_unreachable_index(master: IndexServer, tmp_path: Path):
    data = tmp_path / "data"
    make_samples(data, "CMIP6", 1, 17, "--files-per-version", "1")
    result = esgf_ha(
        "publish",
        "--index",
        master.url,
        "--token",
        "not-a-token",
        "--data-node",
        "d",
        "--root",
        f"{ROOT_NAME}={data}",
        "--json",
        "--no-progress",
        str(data),
    )
    assert result.exit_code == 1
    assert "401" in result.stdout
    port = free_port()  # nobody listens there
    t0 = time.monotonic()
    result = esgf_ha(
        "publish",
        "--index",
        f"http://127.0.0.1:{port}",
        "--token",
        "t",
        "--retries",
        "2",
        "--data-node",
        "d",
        "--root",
        f"{ROOT_NAME}={data}",
        "--json",
        "--no-progress",
        str(data),
    )
    assert result.exit_code == 1
    assert "unreachable" in result.stdout and time.monotonic() - t0 >= 1.4  # backoff 0.5 + 1


def test_master_starting_late_is_waited_for(tmp_path: Path):
    """A master that is down when the publisher starts (e.g. restarting) is retried."""
    data = tmp_path / "data"
    make_samples(data, "CMIP6", 2, 18)
    port = free_port()
    server = IndexServer(tmp_path / "late", extra_args=["--listen", f"127.0.0.1:{port}"])
    token = server.token()  # makes the signing key before the server starts
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esgf_ha",
            "publish",
            "--index",
            f"http://127.0.0.1:{port}",
            "--token",
            token,
            "--data-node",
            "late.example.org",
            "--root",
            f"{ROOT_NAME}={data}",
            "--json",
            "--no-progress",
            "--retries",
            "8",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        server.start()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "retry" in err
        versions = sum(len(v) for v in dataset_dirs(data).values())
        assert len(docs(server, type="Dataset")) == versions
    finally:
        proc.kill()
        proc.communicate(timeout=30)  # closes our ends of its pipes on every path
        server.stop()


def test_retract_and_delete(master: IndexServer, tmp_path: Path):
    data, node = tmp_path / "data", "dn-unpublish.example.org"
    make_samples(data, "CMIP6", 2, 19, "--files-per-version", "2")
    assert publish(master, data, node, str(data))[0] == 0
    first, second = sorted(docs(master, type="Dataset", data_node=node), key=lambda d: d["id"])[:2]
    auth = ["--index", master.url, "--token", master.token()]

    result = esgf_ha("retract", *auth, first["id"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"retracted {first['id']}"
    (doc,) = docs(master, type="Dataset", id=first["id"])
    assert doc["retracted"] is True and doc["latest"] is False
    assert docs(master, type="File", dataset_id=first["id"]) == []

    result = esgf_ha("delete", *auth, "--data-node", node, second["instance_id"])
    assert result.exit_code == 0, result.output
    assert docs(master, type="Dataset", id=second["id"]) == []
    assert docs(master, type="File", dataset_id=second["id"]) == []

    missing = esgf_ha("retract", *auth, "CMIP6.no.such.dataset.v1")
    assert missing.exit_code == 1 and "no dataset CMIP6.no.such.dataset.v1" in missing.output
    unknown = esgf_ha("delete", *auth, "CMIP6.no.such.dataset.v1|nowhere")
    assert unknown.exit_code == 1 and "404" in unknown.output
    denied = esgf_ha("retract", "--index", master.url, "--token", "bad", first["id"])
    assert denied.exit_code == 1 and "401" in denied.output
    no_auth = esgf_ha("retract", "--index", master.url, first["id"])
    assert no_auth.exit_code == 2


@pytest.mark.parametrize(
    "command",
    [["publish"], ["sample-data"], ["mapfile"], ["retract"], ["delete"], ["cert", "issue"]],
)
def test_help_has_examples(command: list[str]) -> None:
    result = esgf_ha(*command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and "esgf-ha " in result.output
