"""`esgf-ha sample-data`: real CF netCDF files in a DRS tree, the same bytes for the same seed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import netCDF4
import orjson
import pytest
from click.testing import CliRunner

from esgf_ha.cli.main import cli
from esgf_ha.publisher.drs_path import Root, parse_drs_path
from esgf_ha.publisher.header import check_against_path, read_header


def sample(out: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["sample-data", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout.strip().splitlines()[-1])


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.nc"))
    }


@pytest.mark.parametrize("project", ["CMIP6", "CMIP5"])
def test_same_seed_same_bytes_other_seed_other_files(tmp_path: Path, project: str) -> None:
    a = sample(tmp_path / "a", "--project", project, "--datasets", "3", "--seed", "5")
    b = sample(tmp_path / "b", "--project", project, "--datasets", "3", "--seed", "5")
    sample(tmp_path / "c", "--project", project, "--datasets", "3", "--seed", "6")
    assert a["files"] == b["files"] > 0 and a["datasets"] == 3
    da, db, dc = digests(tmp_path / "a"), digests(tmp_path / "b"), digests(tmp_path / "c")
    assert da == db  # byte-identical, whatever the wall clock
    assert da != dc
    mtimes = {
        p.relative_to(tmp_path / "a"): p.stat().st_mtime for p in (tmp_path / "a").rglob("*.nc")
    }
    assert mtimes == {
        p.relative_to(tmp_path / "b"): p.stat().st_mtime for p in (tmp_path / "b").rglob("*.nc")
    }
    assert not list((tmp_path / "a").rglob("*.part"))


def test_cmip6_files_are_cf_and_drs(tmp_path: Path) -> None:
    info = sample(tmp_path, "--project", "CMIP6", "--datasets", "4", "--seed", "9")
    files = sorted(tmp_path.rglob("*.nc"))
    assert len(files) == info["files"]
    assert all(2_000 < f.stat().st_size < 200_000 for f in files)
    versions: dict[str, set[str]] = {}
    tracking = set()
    roots = [Root.parse(f"esg_dataroot={tmp_path}")]
    for f in files:
        drs = parse_drs_path(f, roots)  # the path is a CMIP6 DRS path
        header = read_header(f, drs.variable)
        check_against_path(drs, header)  # and the attributes agree with it
        versions.setdefault(drs.master_id, set()).add(drs.version)
        with netCDF4.Dataset(f) as nc:
            assert nc.file_format == "NETCDF4_CLASSIC"
            assert {"time", "lat", "lon", "bnds"} <= set(nc.dimensions)
            for name in ("time", "time_bnds", "lat", "lat_bnds", "lon", "lon_bnds", drs.variable):
                assert name in nc.variables, name
            assert nc["time"].calendar == "noleap" and nc["time"].bounds == "time_bnds"
            assert nc["lon"].size >= 36
            var = nc[drs.variable]
            assert var.dimensions == ("time", "lat", "lon")
            assert {"standard_name", "long_name", "units"} <= set(var.ncattrs())
            attrs = nc.__dict__
            for name in (
                "Conventions activity_id creation_date data_specs_version experiment experiment_id "
                "forcing_index frequency further_info_url grid grid_label initialization_index "
                "institution institution_id license mip_era nominal_resolution physics_index product "
                "realization_index realm source source_id source_type sub_experiment "
                "sub_experiment_id table_id tracking_id variable_id variant_label"
            ).split():
                assert name in attrs, name
            assert attrs["tracking_id"].startswith("hdl:21.14100/")
            assert attrs["further_info_url"].startswith("https://furtherinfo.es-doc.org/CMIP6.")
            assert attrs["creation_date"][:10].replace("-", "") == drs.version
            tracking.add(attrs["tracking_id"])
    assert len(tracking) == len(files)
    assert len(versions) == 4
    assert any(len(v) >= 2 for v in versions.values())  # several versions
    per_version = {}
    for f in files:
        per_version.setdefault(f.parent, []).append(f)
    assert all(len(v) >= 2 for v in per_version.values())  # time-split files


def test_cmip5_files_are_drs(tmp_path: Path) -> None:
    sample(tmp_path, "--project", "CMIP5", "--datasets", "2", "--seed", "4")
    files = sorted(tmp_path.rglob("*.nc"))
    roots = [Root.parse(f"esg_dataroot={tmp_path}")]
    for f in files:
        assert f.relative_to(tmp_path).parts[0] == "cmip5"
        drs = parse_drs_path(f, roots)
        check_against_path(drs, read_header(f, drs.variable))
        with netCDF4.Dataset(f) as nc:
            assert nc.file_format == "NETCDF3_CLASSIC"
            assert nc.project_id == "CMIP5" and nc.product == "output"
            assert nc.table_id.startswith("Table Amon ")
    assert {f.parent.name for f in files} == {"tas", "pr"}  # variables below the version


def test_files_per_version_and_bad_arguments(tmp_path: Path) -> None:
    info = sample(tmp_path, "--datasets", "2", "--files-per-version", "5", "--seed", "2")
    assert info["files"] == 5 * info["versions"]
    bad = CliRunner().invoke(cli, ["sample-data", str(tmp_path), "--datasets", "0"])
    assert bad.exit_code == 2 and "datasets" in bad.output
    bad = CliRunner().invoke(cli, ["sample-data", str(tmp_path), "--project", "CMIP7"])
    assert bad.exit_code == 2
