"""Global attributes and the presence of one variable, without netCDF4-python's Dataset.

Publishing from a plain esgprep mapfile opens every file only to read its global attributes
and to check that its variable exists. `netCDF4.Dataset` has netCDF-C read the metadata of
every variable and dimension and builds a Python object for each: about 2 ms of CPU a file
here, most of a publication's time, while the answer is a few dozen small attributes.

Two cheaper readers call the C libraries netCDF4 itself loaded (found among the process's
mapped libraries) through ctypes, and convert values the way netCDF4's `_get_att` and
`header._plain` do, so the attributes are the same, value for value and type for type:
- `hdf5_attrs`, for netCDF-4 files: the HDF5 library directly (about 0.6 ms a file); it
  answers only for files netCDF-C wrote (`_NCProperties`) with the attribute types netCDF-C
  maps plainly, and skips the attributes netCDF-C keeps hidden;
- `netcdf_c_attrs`, for every format netCDF-C reads (netCDF-3 classic, 64-bit offset, CDF-5,
  and netCDF-4 files the first one declines): libnetcdf's own open and attribute calls,
  without the Python objects (about 1.5 ms a netCDF-4 file, less for netCDF-3).
Anything else (a user-defined attribute type, a name that is not ASCII, no library found, any
error at all) gives None, and the caller reads the file with netCDF4, which then also says
what is wrong with it.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import netCDF4  # loads the libnetcdf and libhdf5 this module calls
import numpy as np

NC_NOWRITE = 0
NC_GLOBAL = -1
NC_MAX_NAME = 256
NC_CHAR = 2
NC_STRING = 12
# netCDF type -> numpy type, as netCDF4 maps them (NC_BYTE is signed)
NUMERIC = {1: "i1", 3: "i2", 4: "i4", 5: "f4", 6: "f8", 7: "u1", 8: "u2", 9: "u4", 10: "i8"}
NUMERIC[11] = "u8"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# reserved attributes netCDF-C keeps out of a file's attribute list, and reserved names it
# lists as plain global attributes (_ChunkSizes is reserved for variables; files that went
# through OPeNDAP carry it as a global one); other names beginning with "_" are left to
# libnetcdf, which knows the whole list
HIDDEN = frozenset({"_NCProperties", "_nc3_strict"})
SHOWN = frozenset({"_ChunkSizes"})
H5T_INTEGER, H5T_FLOAT, H5T_STRING = 0, 1, 3
H5S_SCALAR, H5S_SIMPLE = 0, 1
H5I_DATASET = 5
H5_INDEX_CRT_ORDER, H5_ITER_INC = 1, 0

_hid = ctypes.c_int64
_NAMES = ctypes.CFUNCTYPE(ctypes.c_int, _hid, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p)
_H5_CALLS: dict[str, tuple[object, list[object]]] = {
    "H5Fopen": (_hid, [ctypes.c_char_p, ctypes.c_uint, _hid]),
    "H5Fclose": (ctypes.c_int, [_hid]),
    "H5Aiterate2": (ctypes.c_int, [_hid, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, _NAMES]),
    "H5Aopen": (_hid, [_hid, ctypes.c_char_p, _hid]),
    "H5Aexists": (ctypes.c_int, [_hid, ctypes.c_char_p]),
    "H5Aread": (ctypes.c_int, [_hid, _hid, ctypes.c_void_p]),
    "H5Aclose": (ctypes.c_int, [_hid]),
    "H5Aget_type": (_hid, [_hid]),
    "H5Aget_space": (_hid, [_hid]),
    "H5Tget_class": (ctypes.c_int, [_hid]),
    "H5Tget_size": (ctypes.c_size_t, [_hid]),
    "H5Tget_sign": (ctypes.c_int, [_hid]),
    "H5Tis_variable_str": (ctypes.c_int, [_hid]),
    "H5Tget_native_type": (_hid, [_hid, ctypes.c_int]),
    "H5Tclose": (ctypes.c_int, [_hid]),
    "H5Treclaim": (ctypes.c_int, [_hid, _hid, _hid, ctypes.c_void_p]),
    "H5Sget_simple_extent_type": (ctypes.c_int, [_hid]),
    "H5Sget_simple_extent_npoints": (ctypes.c_int64, [_hid]),
    "H5Sclose": (ctypes.c_int, [_hid]),
    "H5Lexists": (ctypes.c_int, [_hid, ctypes.c_char_p, _hid]),
    "H5Oopen": (_hid, [_hid, ctypes.c_char_p, _hid]),
    "H5Oclose": (ctypes.c_int, [_hid]),
    "H5Iget_type": (ctypes.c_int, [_hid]),
    "H5Eset_auto2": (ctypes.c_int, [_hid, ctypes.c_void_p, ctypes.c_void_p]),
}


class _Unsure(Exception):
    """The file holds something this reader does not answer for like netCDF4 does."""


def _mapped(prefix: str) -> ctypes.PyDLL | None:
    """The copy of a library netCDF4 loaded: a second copy (h5py brings its own HDF5) keeps
    its own state. PyDLL keeps the GIL held during calls: neither library may be called from
    two threads at once."""
    assert netCDF4.__netcdf4libversion__  # imported, so its libraries are mapped
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    mapped = {line.split()[-1] for line in maps if "/" in line}
    netcdf = {p for p in mapped if Path(p).name.startswith("libnetcdf")}
    paths = {p for p in mapped if Path(p).name.startswith(prefix)}
    if len(paths) > 1 and len(netcdf) == 1:  # the one beside libnetcdf
        paths = {p for p in paths if Path(p).parent == Path(next(iter(netcdf))).parent}
    return ctypes.PyDLL(paths.pop()) if len(paths) == 1 else None


@functools.cache
def _libnetcdf() -> ctypes.PyDLL | None:
    lib = _mapped("libnetcdf")
    if lib is not None:
        lib.nc_inq_att.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.nc_free_string.argtypes = [ctypes.c_size_t, ctypes.c_void_p]
    return lib


@functools.cache
def _libhdf5() -> ctypes.PyDLL | None:
    lib = _mapped("libhdf5-")
    if lib is None:
        return None
    try:
        for name, (restype, argtypes) in _H5_CALLS.items():
            call = getattr(lib, name)
            call.restype, call.argtypes = restype, argtypes
    except AttributeError:  # an HDF5 older than 1.12 (no H5Treclaim)
        return None
    lib.H5Eset_auto2(0, None, None)  # no error stacks on stderr (netCDF-C does the same)
    return lib


def _text(raw: bytes) -> str:
    # what netCDF4's _get_att does with NC_CHAR and NC_STRING values
    return raw.decode("utf-8", errors="replace").replace("\x00", "")


def _name(raw: bytes) -> str:
    if not raw.isascii():  # netCDF-C normalises other names (NFC): leave them to it
        raise _Unsure
    return raw.decode()


def _numbers(values: np.ndarray) -> object:
    """A numeric attribute as netCDF4 returns it and `header._plain` makes it plain."""
    if values.size == 1:
        return values[0].item()
    return [v.item() for v in values]


def _h5_strings(h5: ctypes.PyDLL, attr: int, htype: int, space: int, n: int) -> object:
    if not h5.H5Tis_variable_str(htype):
        if n != 1 or h5.H5Sget_simple_extent_type(space) != H5S_SCALAR:
            raise _Unsure  # netCDF-C reads fixed-size string arrays otherwise
        chars = ctypes.create_string_buffer(h5.H5Tget_size(htype))
        if h5.H5Aread(attr, htype, chars) < 0:
            raise _Unsure
        return _text(chars.raw)
    strings = (ctypes.c_char_p * n)()
    if h5.H5Aread(attr, htype, strings) < 0:
        raise _Unsure
    try:
        texts = [_text(s) if s else "" for s in strings]
    finally:
        h5.H5Treclaim(htype, space, 0, strings)
    return texts[0] if n == 1 else texts


def _h5_numbers(h5: ctypes.PyDLL, attr: int, htype: int, kind: int, n: int) -> object:
    size = h5.H5Tget_size(htype)
    dtype: str | None = None
    if kind == H5T_FLOAT and size in (4, 8):
        dtype = f"f{size}"
    elif kind == H5T_INTEGER and size in (1, 2, 4, 8):
        dtype = f"{'u' if h5.H5Tget_sign(htype) == 0 else 'i'}{size}"
    if dtype is None:
        raise _Unsure
    native = h5.H5Tget_native_type(htype, 0)
    if native < 0:
        raise _Unsure
    try:
        values = np.empty(n, dtype)
        if h5.H5Tget_size(native) != size or h5.H5Aread(attr, native, values.ctypes.data) < 0:
            raise _Unsure
    finally:
        h5.H5Tclose(native)
    return _numbers(values)


def _h5_value(h5: ctypes.PyDLL, loc: int, name: bytes) -> object:
    attr = h5.H5Aopen(loc, name, 0)
    if attr < 0:
        raise _Unsure
    htype, space = h5.H5Aget_type(attr), h5.H5Aget_space(attr)
    try:
        n = h5.H5Sget_simple_extent_npoints(space)
        if htype < 0 or space < 0 or n < 1:  # an empty (null) dataspace, among others
            raise _Unsure
        kind = h5.H5Tget_class(htype)
        if kind == H5T_STRING:
            return _h5_strings(h5, attr, htype, space, n)
        if kind in (H5T_INTEGER, H5T_FLOAT):
            return _h5_numbers(h5, attr, htype, kind, n)
        raise _Unsure
    finally:
        h5.H5Tclose(htype)
        h5.H5Sclose(space)
        h5.H5Aclose(attr)


def _h5_is_variable(h5: ctypes.PyDLL, loc: int, variable: str) -> bool:
    name = variable.encode()
    if not variable.isascii() or "/" in variable or h5.H5Lexists(loc, name, 0) <= 0:
        return False
    obj = h5.H5Oopen(loc, name, 0)
    if obj < 0:
        return False
    try:
        # a dimension scale may be a dimension and no variable: netCDF-C tells them apart
        return h5.H5Iget_type(obj) == H5I_DATASET and h5.H5Aexists(obj, b"NAME") == 0
    finally:
        h5.H5Oclose(obj)


def _h5_read(h5: ctypes.PyDLL, fid: int, variable: str) -> dict[str, object] | None:
    names: list[bytes] = []

    def collect(loc: int, name: bytes, info: object, data: object) -> int:
        names.append(name)
        return 0

    # creation order, as netCDF-C lists them (it tracks the order in the files it writes)
    if h5.H5Aiterate2(fid, H5_INDEX_CRT_ORDER, H5_ITER_INC, None, _NAMES(collect)) < 0:
        return None
    found = {_name(name): _h5_value(h5, fid, name) for name in names}
    # without it the file may not come from netCDF-C, which may then read it otherwise
    if "_NCProperties" not in found or not _h5_is_variable(h5, fid, variable):
        return None
    if any(k.startswith("_") and k not in HIDDEN | SHOWN for k in found):
        return None
    return {k: v for k, v in found.items() if k not in HIDDEN}


def hdf5_attrs(path: Path, variable: str) -> dict[str, object] | None:
    """The global attributes of a netCDF-4 file read with the HDF5 library, or None."""
    h5 = _libhdf5()
    if h5 is None:
        return None
    try:
        fid = h5.H5Fopen(str(path).encode("utf-8"), 0, 0)
        if fid < 0:
            return None
        try:
            return _h5_read(h5, fid, variable)
        finally:
            h5.H5Fclose(fid)
    except Exception:  # noqa: BLE001 - whatever went wrong, netCDF4 reads it and says what
        return None


def _nc_value(lib: ctypes.PyDLL, ncid: int, name: bytes) -> object:
    """One global attribute as netCDF4's `_get_att` then `header._plain` give it."""
    kind, length = ctypes.c_int(), ctypes.c_size_t()
    if lib.nc_inq_att(ncid, NC_GLOBAL, name, ctypes.byref(kind), ctypes.byref(length)):
        raise _Unsure
    n = length.value
    if kind.value == NC_CHAR:
        chars = ctypes.create_string_buffer(n + 1)
        if lib.nc_get_att_text(ncid, NC_GLOBAL, name, chars):
            raise _Unsure
        return _text(chars.raw[:n])
    if kind.value == NC_STRING:
        strings = (ctypes.c_char_p * max(n, 1))()
        if lib.nc_get_att_string(ncid, NC_GLOBAL, name, strings):
            raise _Unsure
        try:
            texts = [_text(s) if s else "" for s in strings[:n]]
        finally:
            lib.nc_free_string(n, strings)
        return texts[0] if len(texts) == 1 else texts
    dtype = NUMERIC.get(kind.value)
    if dtype is None:  # compound, enum, vlen, opaque: left to netCDF4
        raise _Unsure
    values = np.empty(n, dtype)
    if lib.nc_get_att(ncid, NC_GLOBAL, name, values.ctypes.data_as(ctypes.c_void_p)):
        raise _Unsure
    return _numbers(values)


def _nc_read(lib: ctypes.PyDLL, ncid: int, variable: str) -> dict[str, object] | None:
    count, varid = ctypes.c_int(), ctypes.c_int()
    # netCDF-C normalises non-ASCII names; netCDF4's dict of variables does not
    if not variable.isascii() or lib.nc_inq_varid(ncid, variable.encode(), ctypes.byref(varid)):
        return None
    if lib.nc_inq_natts(ncid, ctypes.byref(count)):
        return None
    attrs: dict[str, object] = {}
    name = ctypes.create_string_buffer(NC_MAX_NAME + 1)
    for i in range(count.value):
        if lib.nc_inq_attname(ncid, NC_GLOBAL, i, name):
            return None
        attrs[name.value.decode("utf-8")] = _nc_value(lib, ncid, name.value)
    return attrs


def netcdf_c_attrs(path: Path, variable: str) -> dict[str, object] | None:
    """The global attributes read with libnetcdf's own calls, or None."""
    lib = _libnetcdf()
    if lib is None:
        return None
    try:
        ncid = ctypes.c_int()
        if lib.nc_open(str(path).encode("utf-8"), NC_NOWRITE, ctypes.byref(ncid)):
            return None
        try:
            return _nc_read(lib, ncid.value, variable)
        finally:
            lib.nc_close(ncid.value)
    except Exception:  # noqa: BLE001 - whatever went wrong, netCDF4 reads it and says what
        return None


def read_attrs(path: Path, variable: str) -> dict[str, object] | None:
    """The file's global attributes as `read_header` has them, when the file holds
    `variable`; None when netCDF4 must answer (the variable is missing, the file is
    unreadable, or anything these readers cannot vouch for)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(HDF5_SIGNATURE))
    except OSError:
        return None
    if head == HDF5_SIGNATURE:
        attrs = hdf5_attrs(path, variable)
        if attrs is not None:
            return attrs
    return netcdf_c_attrs(path, variable)
