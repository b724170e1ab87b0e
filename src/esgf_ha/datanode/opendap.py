"""OPeNDAP (DAP2) for netCDF files: `.dds`, `.das`, `.dods?<projection>` and a small `.html`
page, written here from the DAP2 specification with netCDF4 reading the file.

Every variable is a DAP `Array` (coordinates included) or, when it has no dimensions, a base
type — the shape both xarray engines (pydap and netCDF-C) read, scalar coordinates such as
CMIP6 `height` included. Hyperslabs `var[start:stride:stop]` (or `[i]`, `[start:stop]`) are
applied per variable; selections (`&...`) are not supported.

XDR encoding (DAP2 §7.3): numeric arrays are two big-endian uint32 element counts then the
values; 16-bit integers travel as 32-bit; bytes are packed and padded to 4; string arrays carry
their count once, then per string a uint32 length, the bytes and padding. Types DAP2 lacks
are widened: int8 → Int16, 64-bit integers → Float64 (documented in docs/data-node.md)."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import netCDF4
import numpy as np

from esgf_ha.datanode.errors import BadRequest, NotFound, PayloadTooLarge

SUFFIXES = (".dds", ".das", ".dods", ".html", ".ver")
# more names than any real file has variables; parsing is bounded before they are looked up
MAX_PROJECTIONS = 1024
# a data response is read, encoded and sent this many bytes at a time
CHUNK_BYTES = 4 * 1024 * 1024
_NAME_OK = re.compile(r"[A-Za-z0-9_.+\-]")
_SLICE = re.compile(r"\[([^\[\]]*)\]")
_PROJ = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")

# numpy kind+size -> (DAP2 type, XDR dtype)
_TYPES: dict[str, tuple[str, str]] = {
    "f4": ("Float32", ">f4"),
    "f8": ("Float64", ">f8"),
    "i4": ("Int32", ">i4"),
    "u4": ("UInt32", ">u4"),
    "i2": ("Int16", ">i4"),
    "u2": ("UInt16", ">u4"),
    "i1": ("Int16", ">i4"),
    "u1": ("Byte", "u1"),
    "i8": ("Float64", ">f8"),
    "u8": ("Float64", ">f8"),
}


def split_suffix(rel: str) -> tuple[str, str]:
    for suffix in SUFFIXES:
        if rel.endswith(suffix):
            return rel[: -len(suffix)], suffix
    raise NotFound("OPeNDAP URLs end with .dds, .das, .dods or .html")


def _dap_name(name: str) -> str:
    return "".join(c if _NAME_OK.match(c) else f"%{ord(c):02X}" for c in name)


def _type_of(var: Any) -> tuple[str, str]:
    dt = np.dtype(var.dtype) if not isinstance(var.dtype, type) else None
    if dt is None or dt.kind in ("S", "U", "O"):
        return "String", "str"
    key = f"{dt.kind}{dt.itemsize}"
    if key not in _TYPES:
        raise BadRequest(f"variable {var.name} has a type DAP2 cannot carry ({dt})")
    return _TYPES[key]


def _string_shape(var: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Dimensions of a variable as DAP sees them: a char array loses its last dimension."""
    dims, shape = tuple(var.dimensions), tuple(var.shape)
    if var.dtype == np.dtype("S1") and dims:
        return dims[:-1], shape[:-1]
    return dims, shape


@dataclass
class Projection:
    name: str
    slices: tuple[slice, ...]  # one per DAP dimension; empty for scalars


def parse_constraint(query: str, variables: dict[str, Any]) -> list[Projection]:
    """`a,b[0:1:3][2]` → projections; every variable when the projection is empty.

    A variable named twice with the same hyperslab is sent once; named twice with different
    hyperslabs it is refused (a DAP2 response holds each variable once). Without this, one
    unauthenticated URL repeating a variable thousands of times grew a node by 1.4 GB."""
    text = unquote(query)
    if "&" in text:
        raise BadRequest("OPeNDAP selections (&...) are not supported, only projections")
    out = []
    items = [t.strip() for t in text.split(",") if t.strip()] if text.strip() else []
    if not items:
        items = list(variables)
    if len(items) > MAX_PROJECTIONS:
        raise BadRequest(
            f"the projection names {len(items)} variables; at most {MAX_PROJECTIONS} are accepted"
        )
    seen: dict[str, str] = {}
    for item in items:
        m = _PROJ.match(item)
        if m and m.group(1) in seen:
            if seen[m.group(1)] != m.group(2):
                raise BadRequest(
                    f"variable {m.group(1)[:80]!r} is projected twice with different hyperslabs"
                )
            continue
        if m:
            seen[m.group(1)] = m.group(2)
        if not m:
            raise BadRequest(f"malformed projection {item[:80]!r}")
        name = m.group(1)
        var = variables.get(name)
        if var is None:
            raise NotFound(f"no variable {name[:80]!r} in this file")
        _, shape = _string_shape(var)
        groups = _SLICE.findall(m.group(2))
        if shape and len(groups) > len(shape):
            raise BadRequest(f"{name} has {len(shape)} dimensions, {len(groups)} given")
        slices = []
        for dim, size in enumerate(shape):
            slices.append(
                _slice(groups[dim], size, name) if dim < len(groups) else slice(0, size, 1)
            )
        out.append(Projection(name, tuple(slices)))
    return out


def _slice(text: str, size: int, name: str) -> slice:
    parts = [p.strip() for p in text.split(":")]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise BadRequest(f"hyperslab of {name} must be integers: [{text[:40]}]") from None
    if len(nums) == 1:
        start, stride, stop = nums[0], 1, nums[0]
    elif len(nums) == 2:
        start, stride, stop = nums[0], 1, nums[1]
    elif len(nums) == 3:
        start, stride, stop = nums
    else:
        raise BadRequest(f"malformed hyperslab of {name}: [{text[:40]}]")
    if stride < 1 or start < 0 or stop < start or stop >= size:
        raise BadRequest(f"hyperslab [{text[:40]}] of {name} is outside 0..{size - 1}")
    return slice(start, stop + 1, stride)


def _sliced_len(s: slice) -> int:
    return len(range(s.start, s.stop, s.step))


class OpendapFile:
    """One open netCDF file, answering DAP2 requests."""

    def __init__(self, path: Path, public_name: str) -> None:
        try:
            self.nc = netCDF4.Dataset(path)
        except OSError as exc:
            raise NotFound(f"not a readable netCDF file: {exc}") from None
        self.nc.set_auto_maskandscale(False)
        self.nc.set_auto_chartostring(False)
        self.name = public_name
        self.variables: dict[str, Any] = dict(self.nc.variables)

    def close(self) -> None:
        self.nc.close()

    def __enter__(self) -> OpendapFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decl(self, name: str, counts: Iterable[int] | None = None) -> str:
        var = self.variables[name]
        dap_type, _ = _type_of(var)
        dims, shape = _string_shape(var)
        sizes = list(counts) if counts is not None else list(shape)
        brackets = "".join(f"[{_dap_name(d)} = {n}]" for d, n in zip(dims, sizes, strict=True))
        return f"    {dap_type} {_dap_name(name)}{brackets};\n"

    def dds(self, projections: list[Projection] | None = None) -> str:
        body = []
        if projections is None:
            body = [self._decl(name) for name in self.variables]
        else:
            body = [self._decl(p.name, [_sliced_len(s) for s in p.slices]) for p in projections]
        return "Dataset {\n" + "".join(body) + f"}} {_dap_name(self.name)};\n"

    def das(self) -> str:
        out = ["Attributes {\n"]
        for name, var in self.variables.items():
            out.append(f"    {_dap_name(name)} {{\n")
            out.extend(_attributes(var))
            out.append("    }\n")
        out.append("    NC_GLOBAL {\n")
        out.extend(_attributes(self.nc))
        out.append("    }\n")
        unlimited = [d for d, dim in self.nc.dimensions.items() if dim.isunlimited()]
        if unlimited:
            out.append("    DODS_EXTRA {\n")
            out.append(f'        String Unlimited_Dimension "{_escape(unlimited[0])}";\n')
            out.append("    }\n")
        out.append("}\n")
        return "".join(out)

    def dods_size(self, projections: list[Projection]) -> int:
        total = 0
        for p in projections:
            var = self.variables[p.name]
            n = 1
            for s in p.slices:
                n *= _sliced_len(s)
            total += n * max(np.dtype(var.dtype).itemsize, 4) if var.dtype != str else n * 64
        return total

    def dods(self, projections: list[Projection], max_bytes: int) -> bytes:
        return b"".join(self.dods_chunks(projections, max_bytes))

    def dods_chunks(
        self, projections: list[Projection], max_bytes: int, chunk_bytes: int = CHUNK_BYTES
    ) -> Iterator[bytes]:
        """The data response in pieces of about `chunk_bytes`, so that memory stays bounded by
        the piece, not by the response (up to `max_bytes`, 413 above). The size is checked
        before the first piece is made."""
        if self.dods_size(projections) > max_bytes:
            raise PayloadTooLarge(
                f"the subset is larger than {max_bytes} bytes: ask for a smaller hyperslab"
            )
        return self._pieces(projections, chunk_bytes)

    def _pieces(self, projections: list[Projection], chunk_bytes: int) -> Iterator[bytes]:
        yield self.dds(projections).encode() + b"\nData:\n"
        for p in projections:
            var = self.variables[p.name]
            _, xdr = _type_of(var)
            if not p.slices or xdr in ("str", "u1") or var.dtype == np.dtype("S1"):
                yield self._xdr(p)  # scalars, strings and bytes: small, or padded as a whole
                continue
            count = 1
            for s in p.slices:
                count *= _sliced_len(s)
            yield struct.pack(">II", count, count)
            first, rest = p.slices[0], p.slices[1:]
            row_bytes = np.dtype(xdr).itemsize
            for s in rest:
                row_bytes *= _sliced_len(s)
            per_piece = max(1, chunk_bytes // max(row_bytes, 1))
            rows = range(first.start, first.stop, first.step)
            for begin in range(0, len(rows), per_piece):
                block = rows[begin : begin + per_piece]
                sl = slice(block.start, block[-1] + 1, first.step)
                yield np.asarray(var[(sl, *rest)]).astype(xdr).ravel().tobytes()

    def _xdr(self, p: Projection) -> bytes:
        var = self.variables[p.name]
        dap_type, xdr = _type_of(var)
        if var.dtype == np.dtype("S1") and var.dimensions:
            raw = var[p.slices + (slice(None),)] if p.slices else var[...]
            values = [
                b"".join(row).rstrip(b"\0") for row in np.asarray(raw).reshape(-1, raw.shape[-1])
            ]
            return _xdr_strings(values, scalar=not p.slices)
        data = var[p.slices] if p.slices else var[...]
        arr = np.asarray(data)
        if dap_type == "String":
            values = [(v.encode() if isinstance(v, str) else bytes(v)) for v in arr.ravel()]
            return _xdr_strings(values, scalar=not p.slices)
        flat = arr.astype(xdr).ravel()
        if xdr == "u1":
            payload = flat.tobytes() + b"\0" * (-flat.size % 4)
            if not p.slices:
                return flat.tobytes() + b"\0" * 3
        else:
            payload = flat.tobytes()
            if not p.slices:
                return payload
        return struct.pack(">II", flat.size, flat.size) + payload


def _xdr_strings(values: list[bytes], *, scalar: bool) -> bytes:
    # unlike numbers, a string array carries its element count once (libdap's Vector)
    out = [] if scalar else [struct.pack(">I", len(values))]
    for v in values:
        out.append(struct.pack(">I", len(v)) + v + b"\0" * (-len(v) % 4))
    return b"".join(out)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _attributes(obj: Any) -> list[str]:
    out = []
    for key in obj.ncattrs():
        value = obj.getncattr(key)
        name = _dap_name(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            out.append(f'        String {name} "{_escape(value)}";\n')
            continue
        arr = np.atleast_1d(np.asarray(value))
        if arr.dtype.kind in ("U", "S", "O"):
            joined = " ".join(str(v) for v in arr)
            out.append(f'        String {name} "{_escape(joined)}";\n')
            continue
        key_t = f"{arr.dtype.kind}{arr.dtype.itemsize}"
        dap_type = _TYPES.get(key_t, ("Float64", ">f8"))[0]
        out.append(f"        {dap_type} {name} {', '.join(_number(v, arr.dtype) for v in arr)};\n")
    return out


def _number(v: Any, dtype: np.dtype) -> str:
    if dtype.kind == "f":
        f = float(v)
        if np.isnan(f):
            return "NaN"
        if np.isinf(f):
            return "Inf" if f > 0 else "-Inf"
        return str(np.float32(f)) if dtype.itemsize == 4 else repr(f)
    return str(int(v))


def html_page(f: OpendapFile, url: str) -> str:
    rows = "".join(f"<li><code>{escape(f._decl(n).strip())}</code></li>" for n in f.variables)
    return (
        f"<html><head><title>OPeNDAP {escape(f.name)}</title></head><body>"
        f"<h1>{escape(f.name)}</h1><p>Data URL: <code>{escape(url)}</code></p>"
        f"<p><a href='{escape(url)}.dds'>DDS</a> · <a href='{escape(url)}.das'>DAS</a></p>"
        f"<ul>{rows}</ul></body></html>"
    )
