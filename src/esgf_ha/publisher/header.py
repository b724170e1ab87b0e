"""What a netCDF file says about itself: global attributes, the variable, time and space extent.

Also the checks of those attributes against the DRS path (spec §1.2/§1.3): a file whose
attributes disagree with where it lies would be published under the wrong identifiers.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import cftime
import netCDF4
import numpy as np

from esgf_ha.publisher.drs_path import DRSPath
from esgf_ha.publisher.errors import DRSMismatch, MissingAttribute, NotNetCDF, Unreadable
from esgf_ha.publisher.quickattrs import read_attrs
from esgf_ha.records.drs import CMIP6

REQUIRED = {
    "CMIP6": (
        "mip_era",
        "activity_id",
        "institution_id",
        "source_id",
        "experiment_id",
        "variant_label",
        "table_id",
        "variable_id",
        "grid_label",
        "frequency",
        "tracking_id",
    ),
    "CMIP5": (
        "project_id",
        "product",
        "institute_id",
        "model_id",
        "experiment_id",
        "frequency",
        "modeling_realm",
        "table_id",
        "realization",
        "initialization_method",
        "physics_version",
        "tracking_id",
    ),
}
CMIP6_TRACKING = re.compile(r"^hdl:21\.14100/[0-9a-fA-F-]{36}$")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass
class Header:
    attrs: dict[str, object]
    variable: dict[str, str] = field(default_factory=dict)  # standard_name, long_name, units
    time_start: str | None = None
    time_stop: str | None = None
    lat: tuple[float, float] | None = None
    lon: tuple[float, float] | None = None
    full: bool = True  # False: variable names and grid extent were not read


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.size != 1 else _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _iso(date: object) -> str:
    y, m, d = date.year, date.month, date.day  # type: ignore[attr-defined]
    # calendars like 360_day have Feb 30; the index stores proleptic Gregorian dates
    d = min(d, 28) if m == 2 else min(d, 30 if m in (4, 6, 9, 11) else 31)
    h, mi, s = date.hour, date.minute, date.second  # type: ignore[attr-defined]
    return dt.datetime(y, m, d, h, mi, s).strftime("%Y-%m-%dT%H:%M:%SZ")


def _coord(nc: netCDF4.Dataset, standard_name: str, fallback: str) -> netCDF4.Variable | None:
    usual = nc.variables.get(fallback)
    if usual is not None and usual.ndim == 1:
        return usual
    for var in nc.variables.values():
        if getattr(var, "standard_name", None) == standard_name and var.ndim == 1:
            return var
    return nc.variables.get(fallback)


def _extent(var: netCDF4.Variable | None, nc: netCDF4.Dataset) -> tuple[float, float] | None:
    if var is None or var.size == 0:
        return None
    bounds = nc.variables.get(getattr(var, "bounds", ""))
    source = bounds if bounds is not None else var
    source.set_auto_maskandscale(False)  # plain arrays: masked ones cost more than the read
    values = np.asarray(source[:], dtype="f8")
    return float(values.min()), float(values.max())


def read_header(path: Path, variable: str, *, full: bool = True, time: bool = True) -> Header:
    """Read what the records need; `variable` is the DRS variable (must be in the file).

    `full=False` skips what all files of a dataset version share (the grid extent and the
    variable's names and units), read from one file per directory only; `time=False` skips
    the time axis, which the dataset record needs from its first and last files only. Each
    costs about as much as opening the file, so publishing many files skips both for most.
    With both skipped, the global attributes are read without netCDF4 where that gives the
    same answer (quickattrs), which costs a fraction of netCDF4's open."""
    if not (full or time):
        attrs = read_attrs(path, variable)
        if attrs is not None:
            return Header(attrs, full=False)
    try:
        nc = netCDF4.Dataset(path, "r")
    except FileNotFoundError:
        raise Unreadable(str(path), "no such file (or a dangling link)") from None
    except PermissionError as exc:
        raise Unreadable(str(path), f"cannot be read: {exc.strerror}") from None
    except OSError as exc:
        if not Path(path).exists():
            raise Unreadable(str(path), "no such file (or a dangling link)") from None
        if Path(path).is_dir():
            raise Unreadable(str(path), "is a directory") from None
        raise NotNetCDF(str(path), f"is not a readable netCDF file ({exc})") from None
    try:
        with nc:
            attrs = {k: _plain(v) for k, v in nc.__dict__.items()}
            header = Header(attrs, full=full)
            var = nc.variables.get(variable)
            if var is None:
                raise DRSMismatch(
                    str(path), f"has no variable {variable!r}, the variable of its DRS path"
                )
            if full:
                names = var.__dict__
                header.variable = {
                    k: str(names[k]) for k in ("standard_name", "long_name", "units") if k in names
                }
            axis = _coord(nc, "time", "time") if time else None
            if axis is not None and axis.size and hasattr(axis, "units"):
                calendar = getattr(axis, "calendar", "standard")
                first, last = _extent(axis, nc) or (0.0, 0.0)
                start, stop = cftime.num2date([first, last], axis.units, calendar)
                header.time_start, header.time_stop = _iso(start), _iso(stop)
            if full:
                header.lat = _extent(_coord(nc, "latitude", "lat"), nc)
                header.lon = _extent(_coord(nc, "longitude", "lon"), nc)
            return header
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise NotNetCDF(str(path), f"cannot read its metadata ({exc})") from None


def _text(attrs: dict[str, object], name: str) -> str:
    value = attrs.get(name)
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def check_against_path(drs: DRSPath, header: Header) -> None:
    """Raise MissingAttribute / DRSMismatch unless the attributes agree with the DRS path."""
    attrs, where = header.attrs, str(drs.path)
    missing = [a for a in REQUIRED[drs.project.name] if a not in attrs]
    if missing:
        raise MissingAttribute(where, "lacks required global attributes: " + ", ".join(missing))
    f = drs.facets
    problems: list[str] = []

    def expect(facet: str, got: str, want: str) -> None:
        if got != want:
            problems.append(f"{facet}: path says {want!r}, attributes say {got!r}")

    if drs.project == CMIP6:
        for facet in ("mip_era", "institution_id", "source_id", "experiment_id", "table_id"):
            expect(facet, _text(attrs, facet), f[facet])
        expect("variable_id", _text(attrs, "variable_id"), f["variable_id"])
        expect("grid_label", _text(attrs, "grid_label"), f["grid_label"])
        if f["activity_drs"] not in _text(attrs, "activity_id").split():
            problems.append(
                f"activity_drs: path says {f['activity_drs']!r}, "
                f"activity_id is {_text(attrs, 'activity_id')!r}"
            )
        sub = _text(attrs, "sub_experiment_id") if "sub_experiment_id" in attrs else "none"
        variant = _text(attrs, "variant_label")
        expect("member_id", variant if sub == "none" else f"{sub}-{variant}", f["member_id"])
        problems += tracking_id_problems(drs, _text(attrs, "tracking_id"))
    else:
        if not _text(attrs, "project_id").startswith("CMIP5"):
            problems.append(f"project_id is {_text(attrs, 'project_id')!r}, not CMIP5")
        product = _text(attrs, "product")
        if not (
            product == f["product"] or (product == "output" and f["product"].startswith("output"))
        ):
            problems.append(f"product: path says {f['product']!r}, attributes say {product!r}")
        expect("institute", _text(attrs, "institute_id"), f["institute"])
        expect("model", re.sub(r"[^A-Za-z0-9-]", "-", _text(attrs, "model_id")), f["model"])
        expect("experiment", _text(attrs, "experiment_id"), f["experiment"])
        expect("time_frequency", _text(attrs, "frequency"), f["time_frequency"])
        expect("realm", _text(attrs, "modeling_realm").split()[0], f["realm"])
        table = _text(attrs, "table_id").split()
        expect(
            "cmor_table", table[1] if len(table) > 1 else _text(attrs, "table_id"), f["cmor_table"]
        )
        ensemble = "r{}i{}p{}".format(
            *(_text(attrs, k) for k in ("realization", "initialization_method", "physics_version"))
        )
        expect("ensemble", ensemble, f["ensemble"])
        problems += tracking_id_problems(drs, _text(attrs, "tracking_id"))
    if problems:
        raise DRSMismatch(where, "disagrees with its DRS path: " + "; ".join(problems))


def tracking_id_problems(drs: DRSPath, value: str) -> list[str]:
    if drs.project == CMIP6:
        if not CMIP6_TRACKING.match(value):
            return [f"tracking_id {value!r} is not hdl:21.14100/<uuid>"]
    elif not UUID.match(value):
        return [f"tracking_id {value!r} is not a UUID"]
    return []
