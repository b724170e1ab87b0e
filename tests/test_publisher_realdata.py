"""`esgf-ha publish` on real CMIP6 model output from many modelling centres.

The files come from the `esmvaltool-sample-data` package (a dependency of the `test` extra):
real CMIP6 `ta` files (historical, Amon and day) written by the models' own CMOR runs, cut
to a few grid points by that package, with their original global attributes, file names and
DRS tree (`CMIP6/<activity>/<institution>/<source>/…/v<version>/`). docs/publisher.md lists
what they cover. The test reads them where pip put them and publishes them to a real master.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import netCDF4
import pytest

from tests.publisher_helpers import (
    ROOT_NAME,
    docs,
    esgf_ha,
    holdings,
    one,
    publish,
    publish_process,
    real_root,
    sha256,
)
from tests.servers import IndexServer

# the dataset versions whose two time-split files share one tracking_id in the published data
SHARED_TRACKING_ID = {
    "CMIP6.CMIP.NCAR.CESM2-FV2.historical.r1i1p1f1.Amon.ta.gn.v20191120",
    "CMIP6.CMIP.NCAR.CESM2-WACCM-FV2.historical.r1i1p1f1.Amon.ta.gn.v20191120",
}


@pytest.fixture(scope="module")
def data() -> Path:
    return real_root()


@pytest.fixture(scope="module")
def versions(data: Path) -> dict[str, list[Path]]:
    """instance_id -> the version directory's files, sorted."""
    out: dict[str, list[Path]] = {}
    for path in sorted(data.rglob("*.nc")):
        out.setdefault(".".join(path.parent.relative_to(data).parts), []).append(path)
    return out


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    server = IndexServer(tmp_path_factory.mktemp("realdata") / "master").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def published(master: IndexServer, data: Path) -> tuple[dict, str]:
    """Everything, published once with the default worker count; (summary, stderr)."""
    code, summary, stderr = publish_process(master, data, "dn-real.example.org", str(data))
    assert code == 0, (summary["failed"], summary["file_errors"])
    return summary, stderr


def _named_range(name: str) -> tuple[dt.datetime, dt.datetime]:
    """Start of the first and of the last period a CMIP6 file name gives."""
    match = re.search(r"_(\d{6}|\d{8})-(\d{6}|\d{8})\.nc$", name)
    assert match, name
    fmt = "%Y%m" if len(match.group(1)) == 6 else "%Y%m%d"
    return tuple(dt.datetime.strptime(g, fmt) for g in match.groups())  # type: ignore[return-value]


def _when(value: object) -> dt.datetime:
    return dt.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")


def test_every_real_dataset_version_publishes(
    master: IndexServer, data: Path, versions: dict[str, list[Path]], published: tuple[dict, str]
):
    summary, stderr = published
    files = [p for ps in versions.values() for p in ps]
    centres = {i.split(".")[2] for i in versions}
    assert len(versions) >= 70 and len(files) >= 300 and len(centres) >= 25
    assert summary["ok"] and not summary["failed"] and not summary["file_errors"]
    assert sorted(p.split("|")[0] for p in summary["published"]) == sorted(versions)
    assert summary["files"] == len(files)
    # the two NCAR versions publish, and their shared tracking_id is reported
    warned = {w["path"]: w for w in summary["warnings"]}
    assert {w["kind"] for w in warned.values()} == {"DuplicateTrackingId"}
    assert sorted(warned) == sorted(str(versions[i][1]) for i in SHARED_TRACKING_ID)
    for path in warned:
        assert f"warning DuplicateTrackingId: {path}:" in stderr

    node = "dn-real.example.org"
    datasets = {d["instance_id"]: d for d in docs(master, type="Dataset", data_node=node)}
    assert sorted(datasets) == sorted(versions)
    for instance, paths in versions.items():
        ds = datasets[instance]
        with netCDF4.Dataset(paths[0]) as nc:
            attrs = nc.__dict__
            long_name = nc.variables["ta"].long_name
        # the files lie where their own global attributes put them in the DRS (the version
        # is the publication date of the directory, not an attribute CMIP6 requires)
        drs = [attrs[a] for a in ("mip_era", "activity_id", "institution_id", "source_id")]
        drs += [attrs[a] for a in ("experiment_id", "variant_label", "table_id")]
        drs += [attrs[a] for a in ("variable_id", "grid_label")]
        assert ".".join(drs) == instance.rsplit(".", 1)[0], instance
        children = docs(master, type="File", dataset_id=ds["id"])
        assert ds["number_of_files"] == len(children) == len(paths), instance
        assert ds["size"] == sum(p.stat().st_size for p in paths), instance
        # facets as the path gives them, attributes as the files give them
        parts = instance.split(".")
        assert [one(ds, f) for f in ("activity_drs", "institution_id", "source_id")] == parts[1:4]
        assert [one(ds, f) for f in ("member_id", "table_id", "variable_id", "grid_label")] == (
            parts[5:9]
        )
        for field in ("frequency", "variant_label", "nominal_resolution", "grid"):
            assert one(ds, field) == attrs[field], (instance, field)
        assert ds["realm"] == attrs["realm"].split(), instance
        assert ds["activity_id"] == attrs["activity_id"].split(), instance
        assert ds["variable"] == ["ta"] and ds["variable_long_name"] == [long_name], instance
        assert "drs_id" not in ds and "format" not in ds, instance
        # the time extent: from the first and last files' time axes, in the named range
        first, _ = _named_range(paths[0].name)
        _, last = _named_range(paths[-1].name)
        start, stop = _when(one(ds, "datetime_start")), _when(one(ds, "datetime_stop"))
        assert abs(start - first) <= dt.timedelta(days=31), (instance, start, first)
        assert last <= stop <= last + dt.timedelta(days=62), (instance, stop, last)
        assert -90 <= one(ds, "south_degrees") <= one(ds, "north_degrees") <= 90, instance
        by_name = {c["title"]: c for c in children}
        for path in paths:
            record = by_name[path.name]
            rel = path.relative_to(data).as_posix()
            assert one(record, "publish_path") == f"{ROOT_NAME}/{rel}"
            assert record["checksum"] == [sha256(path)] and record["size"] == path.stat().st_size
            with netCDF4.Dataset(path) as nc:
                assert record["tracking_id"] == [nc.tracking_id]
        if instance in SHARED_TRACKING_ID:
            assert len({c["tracking_id"][0] for c in children}) == 1, instance
    # facet searches find them: every frequency and institution, as often as they occur
    for facet in ("frequency", "institution_id", "nominal_resolution"):
        counts: dict[str, int] = {}
        for ds in datasets.values():
            counts[one(ds, facet)] = counts.get(one(ds, facet), 0) + 1
        for value, count in counts.items():
            found = docs(master, type="Dataset", data_node=node, **{facet: value})
            assert len(found) == count, (facet, value)


def test_real_data_records_do_not_depend_on_the_worker_count(
    master: IndexServer, data: Path, published: tuple[dict, str]
):
    code, summary, _ = publish_process(
        master, data, "dn-real-1job.example.org", "--jobs", "1", str(data)
    )
    assert code == 0 and summary["ok"], summary["failed"]
    several = holdings(master, "dn-real.example.org")
    single = holdings(master, "dn-real-1job.example.org")
    assert single.keys() == several.keys()
    for key, record in single.items():
        assert several[key] == record, key


def test_real_data_mapfile_publishes_the_same_records(
    data: Path, versions: dict[str, list[Path]], tmp_path: Path
):
    """A mapfile of the real files (written with their tracking ids) gives the records a scan
    gives: the shortcut that reads only the first and last file of a directory holds on
    real data, shared tracking ids included."""
    result = esgf_ha("mapfile", "--root", f"{ROOT_NAME}={data}", str(data))
    assert result.exit_code == 0, result.output[-2000:]
    assert result.stderr.count("warning DuplicateTrackingId:") == len(SHARED_TRACKING_ID)
    lines = result.stdout.splitlines()
    assert len(lines) == sum(len(v) for v in versions.values())
    mapfile = tmp_path / "real.map"
    mapfile.write_text(result.stdout)
    node = "dn-real-map.example.org"
    code, scanned = publish(None, data, node, "--dry-run", str(data))
    assert code == 0, scanned["file_errors"]
    code, mapped = publish(None, data, node, "--dry-run", "--mapfile", str(mapfile))
    assert code == 0, mapped["file_errors"]
    assert mapped["records"] == scanned["records"]
    assert mapped["warnings"] == scanned["warnings"] and len(mapped["warnings"]) == 2
