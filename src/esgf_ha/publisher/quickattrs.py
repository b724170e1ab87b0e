"""Global attributes and the presence of one variable, read with netCDF-C but without
netCDF4-python's Dataset.

Publishing from a plain esgprep mapfile opens every file only to read its global attributes
and to check that its variable exists. `netCDF4.Dataset` builds a Python object for every
variable and dimension on open and asks the C library a dozen questions about each: more
than half of the cost of a header read. Here the same C library that netCDF4 loaded
(libnetcdf, found among the process's mapped libraries) is called directly through ctypes:
the same open, the same attribute calls, converted the way netCDF4's `_get_att` and
`header._plain` convert them, so the attributes are the same, value for value and type for
type, for every format netCDF-C reads (netCDF-3 classic, 64-bit offset, CDF-5, netCDF-4).

Anything else (a user-defined attribute type, a name that is not plain UTF-8, no libnetcdf to
be found, any error at all) gives None, and the caller reads the file with netCDF4, which then
also says what is wrong with it.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import netCDF4  # loads the libnetcdf this module calls
import numpy as np

NC_NOWRITE = 0
NC_GLOBAL = -1
NC_MAX_NAME = 256
NC_CHAR = 2
NC_STRING = 12
# netCDF type -> numpy type, as netCDF4 maps them (NC_BYTE is signed)
NUMERIC = {
    1: "i1",
    3: "i2",
    4: "i4",
    5: "f4",
    6: "f8",
    7: "u1",
    8: "u2",
    9: "u4",
    10: "i8",
    11: "u8",
}

_lib: ctypes.PyDLL | None = None
_loaded = False
_load_lock = threading.Lock()


def _libnetcdf() -> ctypes.PyDLL | None:
    """The libnetcdf netCDF4 uses (a second copy would bring its own HDF5 state).

    PyDLL keeps the GIL held during calls, as netCDF-C is not thread-safe."""
    global _lib, _loaded
    with _load_lock:
        if not _loaded:
            _loaded = True
            assert netCDF4.__netcdf4libversion__  # imported, so libnetcdf is mapped
            try:
                maps = Path("/proc/self/maps").read_text().splitlines()
            except OSError:
                maps = []
            paths = {line.split()[-1] for line in maps if "/libnetcdf" in line}
            if len(paths) == 1:
                lib = ctypes.PyDLL(paths.pop())
                lib.nc_inq_att.argtypes = [
                    ctypes.c_int,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.POINTER(ctypes.c_int),
                    ctypes.POINTER(ctypes.c_size_t),
                ]
                lib.nc_free_string.argtypes = [ctypes.c_size_t, ctypes.c_void_p]
                _lib = lib
    return _lib


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").replace("\x00", "")


def _value(lib: ctypes.PyDLL, ncid: int, name: bytes) -> object | None:
    """One global attribute as netCDF4's `_get_att` then `header._plain` give it."""
    kind, length = ctypes.c_int(), ctypes.c_size_t()
    if lib.nc_inq_att(ncid, NC_GLOBAL, name, ctypes.byref(kind), ctypes.byref(length)):
        return None
    n = length.value
    if kind.value == NC_CHAR:
        chars = ctypes.create_string_buffer(n + 1)
        if lib.nc_get_att_text(ncid, NC_GLOBAL, name, chars):
            return None
        return _text(chars.raw[:n])
    if kind.value == NC_STRING:
        strings = (ctypes.c_char_p * max(n, 1))()
        if lib.nc_get_att_string(ncid, NC_GLOBAL, name, strings):
            return None
        try:
            texts = [_text(s) if s else "" for s in strings[:n]]
        finally:
            lib.nc_free_string(n, strings)
        return texts[0] if len(texts) == 1 else texts
    dtype = NUMERIC.get(kind.value)
    if dtype is None:  # compound, enum, vlen, opaque: left to netCDF4
        return None
    values = np.empty(n, dtype)
    if lib.nc_get_att(ncid, NC_GLOBAL, name, values.ctypes.data_as(ctypes.c_void_p)):
        return None
    if n == 1:
        return values[0].item()
    return [v.item() for v in values]


def _read(lib: ctypes.PyDLL, ncid: int, variable: str) -> dict[str, object] | None:
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
        value = _value(lib, ncid, name.value)
        if value is None:
            return None
        attrs[name.value.decode("utf-8")] = value
    return attrs


def read_attrs(path: Path, variable: str) -> dict[str, object] | None:
    """The file's global attributes as `read_header` has them, when the file holds
    `variable`; None when netCDF4 must answer (the variable is missing, the file is
    unreadable, or anything this reader cannot vouch for)."""
    lib = _libnetcdf()
    if lib is None:
        return None
    try:
        encoded = str(path).encode("utf-8")
        ncid = ctypes.c_int()
        if lib.nc_open(encoded, NC_NOWRITE, ctypes.byref(ncid)):
            return None
        try:
            return _read(lib, ncid.value, variable)
        finally:
            lib.nc_close(ncid.value)
    except Exception:  # noqa: BLE001 - whatever went wrong, netCDF4 reads it and says what
        return None
