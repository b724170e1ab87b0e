"""Mapfile lines, root options, DRS paths and checksums: pure functions, no server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from esgf_ha.publisher.checksums import checksum_many, file_checksum
from esgf_ha.publisher.drs_path import Root, parse_drs_path
from esgf_ha.publisher.errors import MapfileError, NotDRS, OutsideRoot
from esgf_ha.publisher.mapfile import MapLine, parse_line

SHA = "ab" * 32
CMIP6_PATH = (
    "CMIP6/CMIP/NCAR/CESM2/historical/r1i1p1f1/Amon/tas/gn/v20190308/"
    "tas_Amon_CESM2_historical_r1i1p1f1_gn_185001-185012.nc"
)


def test_mapfile_line_round_trip_and_legacy_head() -> None:
    line = MapLine("CMIP6.a.b", "20190308", Path("/d/x.nc"), 12, 1.5, SHA, "SHA256")
    text = line.format()
    assert (
        text
        == f"CMIP6.a.b.v20190308 | /d/x.nc | 12 | mod_time=1.5 | checksum={SHA} | checksum_type=SHA256"
    )
    assert parse_line(text, "m:1") == line
    legacy = parse_line(f"cmip5.a.b#20110916 | /d/x.nc | 12 | checksum={SHA}", "m:1")
    assert (legacy.master_id, legacy.version, legacy.checksum_type) == (
        "cmip5.a.b",
        "20110916",
        "SHA256",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("just one field", "expected"),
        ("CMIP6.a.b | /d/x.nc | 12", "must end with .v<version>"),
        ("CMIP6.a.b.v1 | d/x.nc | 12", "must be absolute"),
        ("CMIP6.a.b.v1 | /d/x.nc | twelve", "not an integer"),
        ("CMIP6.a.b.v1 | /d/x.nc | -1", "must not be negative"),
        ("CMIP6.a.b.v1 | /d/x.nc | 12 | mod_time=soon", "not a number"),
        ("CMIP6.a.b.v1 | /d/x.nc | 12 | checksum=xyz", "not a SHA256 hex digest"),
        (
            f"CMIP6.a.b.v1 | /d/x.nc | 12 | checksum={SHA} | checksum_type=CRC32",
            "not SHA256 or MD5",
        ),
        ("CMIP6.a.b.v1 | /d/x.nc | 12 | novalue", "not key=value"),
    ],
)
def test_bad_mapfile_lines_say_where_and_why(line: str, message: str) -> None:
    with pytest.raises(MapfileError, match="m:7") as err:
        parse_line(line, "m:7")
    assert message in str(err.value)


def test_root_option_and_drs_paths(tmp_path: Path) -> None:
    for bad in ("nopath", "=/x", "a/b=/x", "name="):
        with pytest.raises(ValueError, match="NAME=PATH"):
            Root.parse(bad)
    root = Root.parse(f"esg_dataroot={tmp_path}")
    drs = parse_drs_path(tmp_path / CMIP6_PATH, [root])
    assert drs.master_id == "CMIP6.CMIP.NCAR.CESM2.historical.r1i1p1f1.Amon.tas.gn"
    assert (drs.version, drs.name, drs.variable) == (
        "20190308",
        CMIP6_PATH.rsplit("/", 1)[1],
        "tas",
    )
    with pytest.raises(OutsideRoot):
        parse_drs_path(Path("/elsewhere") / CMIP6_PATH, [root])
    with pytest.raises(NotDRS, match="11 parts"):
        parse_drs_path(tmp_path / "CMIP6/CMIP/x.nc", [root])
    with pytest.raises(NotDRS, match="version directory"):
        parse_drs_path(tmp_path / CMIP6_PATH.replace("v20190308", "latest"), [root])
    with pytest.raises(NotDRS, match="not in a CMIP5 DRS tree"):
        parse_drs_path(tmp_path / CMIP6_PATH, [root], project="CMIP5")


def test_checksums_match_hashlib_in_order(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * (i * 3_000_001))  # empty, and larger than one buffer
        paths.append(p)
    got = list(checksum_many([*paths, tmp_path / "missing"], threads=3))
    assert [p for p, _ in got] == [*paths, tmp_path / "missing"]
    for p, digest in got[:-1]:
        assert digest == hashlib.sha256(p.read_bytes()).hexdigest()
    assert isinstance(got[-1][1], FileNotFoundError)
    assert file_checksum(paths[2], "md5") == hashlib.md5(paths[2].read_bytes()).hexdigest()
