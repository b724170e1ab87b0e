"""Property tests of the data node's pure pieces: byte-range parsing, path checks, the DRS
path → id mapping, and the DAP2 constraint parser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esgf_ha.datanode.errors import BadRequest, DataNodeError, NotFound, RangeNotSatisfiable
from esgf_ha.datanode.files import parse_range
from esgf_ha.datanode.opendap import parse_constraint
from esgf_ha.datanode.paths import catalog_path, file_instance_id, locate, split


@given(size=st.integers(1, 10**12), a=st.integers(0, 10**13), b=st.integers(0, 10**13))
def test_a_satisfiable_range_lies_inside_the_file(size: int, a: int, b: int) -> None:
    try:
        span = parse_range(f"bytes={a}-{b}", size)
    except RangeNotSatisfiable as exc:
        assert b < a or a >= size
        assert exc.size == size
        return
    assert span is not None
    start, end = span
    assert start == a and 0 <= start <= end < size and end == min(b, size - 1)


@given(size=st.integers(0, 10**9), n=st.integers(0, 10**10))
def test_suffix_ranges(size: int, n: int) -> None:
    try:
        span = parse_range(f"bytes=-{n}", size)
    except RangeNotSatisfiable:
        assert n == 0 or size == 0
        return
    assert span == (max(0, size - n), size - 1)


@given(st.text(max_size=80))
def test_any_range_header_is_a_range_none_or_416(header: str) -> None:
    try:
        span = parse_range(header, 1000)
    except RangeNotSatisfiable:
        return
    assert span is None or 0 <= span[0] <= span[1] < 1000


segment = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)


@given(st.lists(segment, min_size=1, max_size=8))
def test_split_never_yields_a_path_that_climbs(parts: list[str]) -> None:
    path = "/".join(parts)
    try:
        root, rel = split(path)
    except DataNodeError:
        return
    for piece in [root, *rel.split("/")] if rel else [root]:
        assert piece not in ("", ".", "..") and not piece.startswith(".")
        assert "\x00" not in piece and "\\" not in piece


def test_locate_keeps_symlinks_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "f.nc").write_bytes(b"x")
    (root / "latest").symlink_to(root / "v1")
    (root / "out").symlink_to(tmp_path)
    (tmp_path / "secret.txt").write_text("outside")
    assert locate({"r": root}, "r/latest/f.nc").path == (root / "v1" / "f.nc").resolve()
    with pytest.raises(NotFound):
        locate({"r": root}, "r/out/secret.txt")
    # through the outside link and back in: still inside the root, so allowed
    assert locate({"r": root}, "r/out/root/v1/f.nc").path == (root / "v1" / "f.nc").resolve()
    with pytest.raises(NotFound):
        locate({"r": root}, "other/f.nc")
    with pytest.raises(BadRequest):
        locate({"r": root}, "r/v1/../../etc")
    assert os.path.isdir(locate({"r": root}, "r").path)


def test_drs_paths_map_to_ids() -> None:
    rel = "CMIP6/CMIP/MRI/MRI-ESM2-0/historical/r1i1p1f1/Amon/tas/gn/v20190222/tas_x.nc"
    iid = "CMIP6.CMIP.MRI.MRI-ESM2-0.historical.r1i1p1f1.Amon.tas.gn.v20190222.tas_x.nc"
    assert file_instance_id(rel) == iid
    cmip5 = "cmip5/output1/MOHC/HadGEM2-ES/historical/mon/atmos/Amon/r1i1p1/v20110916/tas/t.nc"
    assert file_instance_id(cmip5) == (
        "cmip5.output1.MOHC.HadGEM2-ES.historical.mon.atmos.Amon.r1i1p1.v20110916.t.nc"
    )
    assert file_instance_id("big/blob.bin") is None
    assert catalog_path("A.B.C.v2") == "esgcet/A/B/C/A.B.C.v2.xml"


class _Var:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.dimensions = tuple(f"d{i}" for i in range(len(shape)))
        self.dtype = __import__("numpy").dtype("f4")


@given(start=st.integers(-3, 12), stride=st.integers(-1, 4), stop=st.integers(-3, 12))
def test_hyperslabs_are_checked_against_the_shape(start: int, stride: int, stop: int) -> None:
    variables = {"v": _Var((10,))}
    try:
        (p,) = parse_constraint(f"v[{start}:{stride}:{stop}]", variables)
    except BadRequest:
        assert stride < 1 or start < 0 or stop < start or stop >= 10
        return
    s = p.slices[0]
    assert (s.start, s.step, s.stop) == (start, stride, stop + 1)
    assert list(range(10))[s] == list(range(start, stop + 1, stride))


@given(st.text(max_size=60))
def test_any_constraint_is_projections_or_a_client_error(text: str) -> None:
    variables = {"tas": _Var((12, 4, 36)), "height": _Var(())}
    try:
        projections = parse_constraint(text, variables)
    except DataNodeError as exc:
        assert exc.status in (400, 404)
        return
    for p in projections:
        shape = variables[p.name].shape
        assert len(p.slices) == len(shape)
        assert all(0 <= s.start < s.stop <= n for s, n in zip(p.slices, shape, strict=True))
