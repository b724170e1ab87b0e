"""Dataset and File records of one scanned dataset version (spec §2.3), via records/build.py."""

from __future__ import annotations

import datetime as dt
import uuid

from esgf_ha.publisher.scan import DatasetVersion, ScannedFile
from esgf_ha.records.build import FileInfo, build_records
from esgf_ha.records.drs import CMIP6

# CMIP6 attributes esgcet copies into records; * = space-separated lists (spec §1.3)
CMIP6_COPIED = {
    "frequency": False,
    "realm": True,
    "product": False,
    "nominal_resolution": False,
    "source_type": True,
    "grid": False,
    "creation_date": False,
    "variant_label": False,
    "sub_experiment_id": False,
    "activity_id": True,
    "data_specs_version": False,
    "further_info_url": True,
}
CMIP5_COPIED = {"forcing": False, "creation_date": False}


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: object) -> str:
    # real files carry attributes with stray leading/trailing blanks (CMOR pads some long
    # texts); a facet value with them would never match a search for the plain value
    return str(value).strip()


def _copied(attrs: dict[str, object], table: dict[str, bool]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, is_list in table.items():
        if name in attrs:
            text = _text(attrs[name])
            out[name] = text.split() if is_list else text
    return out


def _extent(files: list[ScannedFile]) -> dict[str, object]:
    out: dict[str, object] = {}
    starts = [f.header.time_start for f in files if f.header.time_start]
    stops = [f.header.time_stop for f in files if f.header.time_stop]
    if starts and stops:
        out["datetime_start"], out["datetime_stop"] = min(starts), max(stops)
    lats = [f.header.lat for f in files if f.header.lat]
    lons = [f.header.lon for f in files if f.header.lon]
    if lats:
        out["south_degrees"] = max(-90.0, min(v[0] for v in lats))
        out["north_degrees"] = min(90.0, max(v[1] for v in lats))
    if lons:
        west, east = min(v[0] for v in lons), max(v[1] for v in lons)
        if east - west >= 359.0:  # a global grid, whatever its first cell edge
            west, east = 0.0, 360.0
        out["west_degrees"], out["east_degrees"] = west, east
    return out


def _variable_fields(f: ScannedFile, variable: str) -> dict[str, object]:
    v = f.header.variable
    out: dict[str, object] = {"variable": variable}
    for field, key in (
        ("cf_standard_name", "standard_name"),
        ("variable_long_name", "long_name"),
        ("variable_units", "units"),
    ):
        if key in v:
            out[field] = _text(v[key])
    return out


def dataset_records(
    ds: DatasetVersion,
    *,
    data_node: str,
    index_node: str,
    url_base: str | None = None,
    opendap: bool = False,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    first = next(f for f in ds.files if f.header.full)
    attrs = first.header.attrs
    project = ds.drs.project
    by_var: dict[str, ScannedFile] = {}
    facets: dict[str, object] = dict(ds.drs.facets)
    extra: dict[str, object] = _extent(ds.files)
    infos = []
    if project == CMIP6:
        extra.update(_copied(attrs, CMIP6_COPIED))
        extra.update(_variable_fields(first, ds.drs.facets["variable_id"]))
        if "experiment" in attrs:
            extra["experiment_title"] = _text(attrs["experiment"])
        if "title" in attrs:
            extra["short_description"] = _text(attrs["title"])
        extra["model_cohort"] = "Registered"
    else:
        extra.update(_copied(attrs, CMIP5_COPIED))
        variables = sorted({f.drs.subdir for f in ds.files})
        extra["variable"] = variables
        by_var = {f.drs.subdir: f for f in reversed(ds.files) if f.header.full}
        assert set(by_var) == {f.drs.subdir for f in ds.files}
        for field, key in (
            ("cf_standard_name", "standard_name"),
            ("variable_long_name", "long_name"),
            ("variable_units", "units"),
        ):
            extra[field] = [_text(by_var[v].header.variable.get(key, "")) for v in variables]
        extra["drs_id"] = ds.drs.master_id
        extra["format"] = "netCDF, " + str(attrs.get("Conventions", "CF"))
        if "experiment" in attrs:
            extra["experiment_title"] = _text(attrs["experiment"])
        if "title" in attrs:
            extra["short_description"] = _text(attrs["title"])
    for f in ds.files:
        per_file: dict[str, object] = {}
        if project != CMIP6:
            per_file = _variable_fields(by_var[f.drs.subdir], f.drs.subdir)
            per_file = {k: [v] for k, v in per_file.items()}
        infos.append(
            FileInfo(
                name=f.drs.name,
                size=f.size,
                checksum=f.checksum,
                checksum_type=f.checksum_type,
                tracking_id=str(f.header.attrs.get("tracking_id", "")),
                mtime=_iso(f.mtime),
                subdir=f.drs.subdir,
                extra=per_file,
            )
        )
    dataset, files = build_records(
        project,
        facets,
        ds.drs.version,
        infos,
        data_node=data_node,
        index_node=index_node,
        root_name=ds.drs.root.name,
        url_base=url_base,
        opendap=opendap,
        extra=extra,
    )
    if project == CMIP6:
        # the dataset PID as esgcet derives it, with no PID service involved (spec §1.1)
        dataset["pid"] = (
            f"hdl:21.14100/{uuid.uuid3(uuid.NAMESPACE_URL, str(dataset['instance_id']))}"
        )
    return dataset, files
