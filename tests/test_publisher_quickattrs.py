"""The quick read of global attributes (publisher/quickattrs.py) against netCDF4's.

Publishing from a plain esgprep mapfile reads the global attributes of most files through
libnetcdf directly instead of `netCDF4.Dataset`; what it reads must be what netCDF4 gives,
value for value and type for type, on real CMIP6 files from many modelling centres, on our
CMIP6 (netCDF-4) and CMIP5 (netCDF-3) samples and on every attribute type netCDF has, and the
records published from those files must be the same field by field.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from esgf_ha.publisher import header as header_module
from esgf_ha.publisher.drs_path import Root, parse_drs_path
from esgf_ha.publisher.errors import DRSMismatch, NotNetCDF, Unreadable
from esgf_ha.publisher.header import _plain, read_header
from esgf_ha.publisher.mapfile import MapLine
from esgf_ha.publisher.pipeline import PublishSettings, run
from esgf_ha.publisher.quickattrs import hdf5_attrs, netcdf_c_attrs, read_attrs
from esgf_ha.publisher.sampledata import generate
from tests.publisher_helpers import ROOT_NAME, real_root


def netcdf4_attrs(path: Path) -> dict[str, object]:
    """What read_header keeps when it opens the file with netCDF4."""
    with netCDF4.Dataset(path) as nc:
        return {k: _plain(v) for k, v in nc.__dict__.items()}


def assert_same(got: dict[str, object] | None, want: dict[str, object], where: Path) -> None:
    assert got is not None, f"the quick read did not answer for {where}"
    assert list(got.items()) == list(want.items()), where
    for key, value in want.items():  # 1 == 1.0 == True: the types must agree too
        assert type(got[key]) is type(value), (where, key)
        if isinstance(value, list):
            assert [type(v) for v in got[key]] == [type(v) for v in value], (where, key)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for project in ("CMIP6", "CMIP5"):
        root = tmp_path_factory.mktemp(project.lower())
        generate(root, project, 3, seed=5, files_per_version=4)
        out[project] = root
    return out


def variable_of(path: Path, root: Path) -> str:
    return parse_drs_path(path, [Root(ROOT_NAME, root)]).variable


def test_real_cmip6_files_read_alike() -> None:
    root = real_root()
    files = sorted(root.rglob("*.nc"))
    assert len(files) > 300
    for path in files:
        want, variable = netcdf4_attrs(path), variable_of(path, root)
        # each reader on its own, and the one read_header uses
        assert_same(hdf5_attrs(path, variable), want, path)
        assert_same(netcdf_c_attrs(path, variable), want, path)
        assert_same(read_attrs(path, variable), want, path)


@pytest.mark.parametrize("project", ["CMIP6", "CMIP5"])
def test_our_samples_read_alike(samples: dict[str, Path], project: str) -> None:
    root = samples[project]
    files = sorted(root.rglob("*.nc"))
    formats = set()
    for path in files:
        with netCDF4.Dataset(path) as nc:
            formats.add(nc.data_model)
        want, variable = netcdf4_attrs(path), variable_of(path, root)
        if project == "CMIP6":
            assert_same(hdf5_attrs(path, variable), want, path)
        else:
            assert hdf5_attrs(path, variable) is None
        assert_same(netcdf_c_attrs(path, variable), want, path)
        assert_same(read_attrs(path, variable), want, path)
    assert formats == {"NETCDF4_CLASSIC" if project == "CMIP6" else "NETCDF3_CLASSIC"}


def write_every_type(path: Path, fmt: str, empty: bool = True) -> None:
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.createDimension("x", 2)
        nc.createVariable("tas", "f4", ("x",))
        nc.setncattr("text", "Météo\nline two")
        if empty:  # netCDF-4 stores these with an empty dataspace, which the HDF5 reader declines
            nc.setncattr("empty", "")
            nc.setncattr("no_numbers", np.array([], dtype="f8"))
        nc.setncattr("one_int", np.int32(7))
        nc.setncattr("doubles", np.array([1.5, -2.0, 3.25]))
        nc.setncattr("floats", np.array([0.1], dtype="f4"))
        nc.setncattr("bytes", np.array([-3, 4], dtype="i1"))
        nc.setncattr("shorts", np.array([300, -300], dtype="i2"))
        if fmt not in ("NETCDF4", "NETCDF3_64BIT_DATA"):  # the only ones with these types
            return
        nc.setncattr("ubytes", np.array([250, 1], dtype="u1"))
        nc.setncattr("ushorts", np.array([65000], dtype="u2"))
        nc.setncattr("uints", np.array([4_000_000_000, 0], dtype="u4"))
        nc.setncattr("int64s", np.array([-(2**62), 5], dtype="i8"))
        nc.setncattr("uint64s", np.array([2**63 + 1], dtype="u8"))
        if fmt == "NETCDF4":
            nc.setncattr_string("one_string", "tracking")
            nc.setncattr_string("strings", ["a", "ünï", ""])


@pytest.mark.parametrize(
    "fmt",
    ["NETCDF4", "NETCDF4_CLASSIC", "NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"],
)
def test_every_attribute_type_reads_alike(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "all.nc"
    write_every_type(path, fmt)
    want = netcdf4_attrs(path)
    assert len(want) >= 8
    assert_same(netcdf_c_attrs(path, "tas"), want, path)
    assert_same(read_attrs(path, "tas"), want, path)
    if fmt.startswith("NETCDF4"):
        assert hdf5_attrs(path, "tas") is None
        write_every_type(path, fmt, empty=False)
        want = netcdf4_attrs(path)
        assert_same(hdf5_attrs(path, "tas"), want, path)
        assert_same(read_attrs(path, "tas"), want, path)


def test_what_it_cannot_vouch_for_is_left_to_netcdf4(tmp_path: Path) -> None:
    path = tmp_path / "compound.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("x", 2)
        nc.createVariable("tas", "f4", ("x",))
        pair = nc.createCompoundType(np.dtype([("a", "i4"), ("b", "f8")]), "pair")
        nc.setncattr("title", "has a compound attribute")
        nc.setncattr("pair", np.array((1, 2.0), dtype=pair.dtype))
    assert hdf5_attrs(path, "tas") is None
    assert read_attrs(path, "tas") is None
    # the variable of the DRS path is missing: netCDF4 answers, and says so
    assert read_attrs(path, "pr") is None
    with pytest.raises(DRSMismatch, match="has no variable 'pr'"):
        read_header(path, "pr", full=False, time=False)
    not_nc = tmp_path / "not.nc"
    not_nc.write_bytes(b"CDF\x01 this is not a netCDF header")
    assert read_attrs(not_nc, "tas") is None
    with pytest.raises(NotNetCDF):
        read_header(not_nc, "tas", full=False, time=False)
    assert read_attrs(tmp_path / "missing.nc", "tas") is None
    with pytest.raises(Unreadable, match="no such file"):
        read_header(tmp_path / "missing.nc", "tas", full=False, time=False)


def plain_lines(root: Path) -> list[MapLine]:
    """An esgprep mapfile's lines (no tracking_id) for every file under root."""
    lines = []
    for path in sorted(root.rglob("*.nc")):
        drs = parse_drs_path(path, [Root(ROOT_NAME, root)])
        size = path.stat().st_size
        lines.append(MapLine(drs.master_id, drs.version, path, size, 1.6e9, "0" * 64, "SHA256"))
    return lines


@pytest.mark.parametrize("which", ["real CMIP6", "CMIP6", "CMIP5"])
def test_records_are_the_same_as_from_netcdf4(
    samples: dict[str, Path], which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = real_root() if which == "real CMIP6" else samples[which]
    settings = PublishSettings("data.example.org", "index.example.org", [Root(ROOT_NAME, root)])
    settings.jobs = 1  # read here, so that the reader below is the one switched off
    lines = plain_lines(root)
    quick = run(lines, settings, None)
    assert quick.ok, quick.file_errors
    monkeypatch.setattr(header_module, "read_attrs", lambda path, variable: None)
    slow = run(lines, settings, None)
    assert slow.ok, slow.file_errors
    assert quick.files == slow.files == len(lines)
    assert quick.warnings == slow.warnings
    assert len(quick.entries) == len(slow.entries) > 0
    for mine, theirs in zip(quick.entries, slow.entries, strict=True):
        assert mine == theirs
