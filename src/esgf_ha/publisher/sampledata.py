"""Small but realistic CMIP6/CMIP5 netCDF files in a DRS tree, for the demo, tests and benchmarks.

Every byte follows from the seed: identifiers (tracking_id) come from a seeded generator, data
from a seeded numpy generator, `creation_date` and the files' modification times from the
version date. So the same seed gives the same files, checksums and mapfiles on every run.
CMIP6 files are NETCDF4_CLASSIC (as CMOR3 writes them), CMIP5 files NETCDF3_CLASSIC (CMOR2).
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import os
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import netCDF4
import numpy as np

from esgf_ha.records.drs import CMIP5, CMIP6
from esgf_ha.records.samples import (
    CMIP5_EXPERIMENTS,
    CMIP5_MODELS,
    CMIP6_EXPERIMENTS,
    CMIP6_SOURCES,
    CMIP6_VARIABLES,
    cmip5_facets,
    cmip6_facets,
)

NLAT, NLON = 18, 36  # 36 longitudes: esgcet then reports a global west/east range
INSTITUTIONS = {
    "NCAR": "National Center for Atmospheric Research, Boulder, CO 80307, USA",
    "MRI": "Meteorological Research Institute, Tsukuba, Ibaraki 305-0052, Japan",
    "IPSL": "Institut Pierre Simon Laplace, Paris 75252, France",
    "MOHC": "Met Office Hadley Centre, Exeter, EX1 3PB, UK",
    "MPI-M": "Max Planck Institute for Meteorology, Hamburg 20146, Germany",
    "INM": "Institute for Numerical Mathematics, Moscow 119333, Russia",
    "CCCma": "Canadian Centre for Climate Modelling and Analysis, Victoria, BC, Canada",
}
EXPERIMENT_TITLES = {
    "historical": "all-forcing simulation of the recent past",
    "ssp585": "update of RCP8.5 based on SSP5",
    "piControl": "pre-industrial control",
    "amip": "AMIP",
    "rcp45": "RCP4.5",
    "rcp85": "RCP8.5",
}
CMIP5_VARIABLES = {
    "tas": ("air_temperature", "Near-Surface Air Temperature", "K"),
    "pr": ("precipitation_flux", "Precipitation", "kg m-2 s-1"),
}
LICENSE = (
    "CMIP6 model data produced for these samples is licensed under a Creative Commons "
    "Attribution 4.0 International License (https://creativecommons.org/licenses)."
)


@dataclass
class SampleSummary:
    root: Path
    project: str
    datasets: int = 0
    versions: int = 0
    files: list[Path] = field(default_factory=list)
    bytes: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "project": self.project,
            "datasets": self.datasets,
            "versions": self.versions,
            "files": len(self.files),
            "bytes": self.bytes,
        }


@dataclass
class _FilePlan:
    path: Path
    attrs: dict[str, object]
    variable: str
    var_attrs: tuple[str, str, str]  # standard_name, long_name, units
    frequency: str
    start: dt.date
    data_seed: int
    mtime: float
    netcdf_format: Literal["NETCDF4_CLASSIC", "NETCDF3_CLASSIC"]


def _version_dates(rng: random.Random, count: int) -> list[str]:
    first = dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(0, 700))
    return [(first + dt.timedelta(days=400 * i)).strftime("%Y%m%d") for i in range(count)]


def _epoch(version: str) -> float:
    return float(calendar.timegm(dt.datetime.strptime(version, "%Y%m%d").timetuple()))


def _time_range(frequency: str, start: dt.date) -> tuple[list[float], list[list[float]], str]:
    """Time values, their bounds (days since 1850-01-01, noleap) and the file-name range."""
    base = (start.year - 1850) * 365.0
    if frequency == "day":
        bounds = [[base + d, base + d + 1] for d in range(31)]
        label = f"{start.year:04d}0101-{start.year:04d}0131"
    else:
        lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        edges = np.concatenate([[0], np.cumsum(lengths)]) + base
        bounds = [[float(edges[m]), float(edges[m + 1])] for m in range(12)]
        label = f"{start.year:04d}01-{start.year:04d}12"
    return [(a + b) / 2 for a, b in bounds], bounds, label


def _write_axes(
    nc: netCDF4.Dataset,
    times: list[float],
    tbounds: list[list[float]],
    lat: np.ndarray,
    lon: np.ndarray,
) -> None:
    """The time, lat and lon coordinates with their bounds, CF-style."""
    nc.createDimension("time", None)
    nc.createDimension("lat", NLAT)
    nc.createDimension("lon", NLON)
    nc.createDimension("bnds", 2)
    t = nc.createVariable("time", "f8", ("time",))
    t.setncatts(
        {
            "bounds": "time_bnds",
            "units": "days since 1850-01-01 00:00:00",
            "calendar": "noleap",
            "axis": "T",
            "long_name": "time",
            "standard_name": "time",
        }
    )
    t[:] = times
    nc.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = tbounds
    la = nc.createVariable("lat", "f8", ("lat",))
    la.setncatts(
        {
            "bounds": "lat_bnds",
            "units": "degrees_north",
            "axis": "Y",
            "long_name": "Latitude",
            "standard_name": "latitude",
        }
    )
    la[:] = lat
    nc.createVariable("lat_bnds", "f8", ("lat", "bnds"))[:] = np.stack([lat - 5, lat + 5], 1)
    lo = nc.createVariable("lon", "f8", ("lon",))
    lo.setncatts(
        {
            "bounds": "lon_bnds",
            "units": "degrees_east",
            "axis": "X",
            "long_name": "Longitude",
            "standard_name": "longitude",
        }
    )
    lo[:] = lon
    step = 360.0 / NLON
    nc.createVariable("lon_bnds", "f8", ("lon", "bnds"))[:] = np.stack(
        [lon - step / 2, lon + step / 2], 1
    )


def _write(plan: _FilePlan) -> int:
    times, tbounds, _ = _time_range(plan.frequency, plan.start)
    lat = np.linspace(-85.0, 85.0, NLAT)
    lon = np.arange(NLON) * (360.0 / NLON)
    rng = np.random.default_rng(plan.data_seed)
    standard, long_name, units = plan.var_attrs
    shape = (len(times), NLAT, NLON)
    climate = 250.0 + 40.0 * np.cos(np.deg2rad(lat))[None, :, None]
    values = (climate + rng.normal(0.0, 2.0, shape)).astype("f4")
    if units != "K":
        values = np.abs(values - 250.0).astype("f4") * np.float32(1e-6)
    tmp = plan.path.with_name(plan.path.name + ".part")
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    compress = plan.netcdf_format.startswith("NETCDF4")
    with netCDF4.Dataset(tmp, "w", format=plan.netcdf_format) as nc:
        _write_axes(nc, times, tbounds, lat, lon)
        var = nc.createVariable(
            plan.variable,
            "f4",
            ("time", "lat", "lon"),
            zlib=compress,
            complevel=1 if compress else 4,
            fill_value=np.float32(1.0e20),
        )
        var.setncatts(
            {
                "standard_name": standard,
                "long_name": long_name,
                "units": units,
                "cell_methods": "area: time: mean",
                "missing_value": np.float32(1.0e20),
            }
        )
        var[:] = values
        nc.setncatts(plan.attrs)
    os.replace(tmp, plan.path)
    os.utime(plan.path, (plan.mtime, plan.mtime))
    return plan.path.stat().st_size


def _cmip6_attrs(
    facets: dict[str, Any],
    version: str,
    freq: str,
    realm: str,
    member: int,
    source_type: Sequence[str],
    rng: random.Random,
) -> dict[str, object]:
    """The global attributes of one CMIP6 sample file, as CMOR writes them."""
    activity, institution = facets["activity_drs"], facets["institution_id"]
    source, experiment = facets["source_id"], facets["experiment_id"]
    variant, table, variable = facets["member_id"], facets["table_id"], facets["variable_id"]
    return {
        "Conventions": "CF-1.7 CMIP-6.2",
        "activity_id": activity,
        "branch_method": "standard",
        "creation_date": f"{version[:4]}-{version[4:6]}-{version[6:]}T00:00:00Z",
        "data_specs_version": "01.00.29",
        "experiment": EXPERIMENT_TITLES[experiment],
        "experiment_id": experiment,
        "forcing_index": np.int32(1),
        "frequency": freq,
        "further_info_url": (
            f"https://furtherinfo.es-doc.org/CMIP6.{institution}.{source}."
            f"{experiment}.none.{variant}"
        ),
        "grid": "native atmosphere grid (18x36 latxlon)",
        "grid_label": "gn",
        "initialization_index": np.int32(1),
        "institution": INSTITUTIONS[institution],
        "institution_id": institution,
        "license": LICENSE,
        "mip_era": "CMIP6",
        "nominal_resolution": "1000 km",
        "physics_index": np.int32(1),
        "product": "model-output",
        "realization_index": np.int32(member),
        "realm": realm,
        "source": f"{source} (2019): sample configuration",
        "source_id": source,
        "source_type": " ".join(source_type),
        "sub_experiment": "none",
        "sub_experiment_id": "none",
        "table_id": table,
        "title": f"{source} output prepared for CMIP6",
        "tracking_id": f"hdl:21.14100/{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "variable_id": variable,
        "variant_label": variant,
    }


def _cmip6_plans(
    root: Path, datasets: int, seed: int, files_per_version: int | None
) -> tuple[list[_FilePlan], int, int]:
    rng = random.Random(seed)
    combos = [
        (s, e, v, m)
        for m in range(1, 1000)  # members last, so a small sample spans models and variables
        for s in CMIP6_SOURCES
        for e in CMIP6_EXPERIMENTS
        for v in CMIP6_VARIABLES
    ]
    picked = rng.sample(combos[: max(datasets * 2, 160)], k=min(datasets, len(combos)))
    plans: list[_FilePlan] = []
    n_versions = 0
    for i, (source, experiment, variable, member) in enumerate(picked):
        institution, source_type = CMIP6_SOURCES[source]
        table, standard, long_name, units, realm, freq = CMIP6_VARIABLES[variable]
        variant = f"r{member}i1p1f1"
        facets = cmip6_facets(source, experiment, variable, member)
        versions = _version_dates(rng, 2 if i == 0 or rng.random() < 0.5 else 1)
        n_versions += len(versions)
        for v_index, version in enumerate(versions):
            directory = root / CMIP6.directory(facets, version)
            nfiles = files_per_version or rng.randint(2, 3)
            for k in range(nfiles):
                start = dt.date(1850 + k, 1, 1)
                label = _time_range(freq, start)[2]
                name = f"{variable}_{table}_{source}_{experiment}_{variant}_gn_{label}.nc"
                attrs = _cmip6_attrs(facets, version, freq, realm, member, source_type, rng)
                plans.append(
                    _FilePlan(
                        path=directory / name,
                        attrs=attrs,
                        variable=variable,
                        var_attrs=(standard, long_name, units),
                        frequency=freq,
                        start=start,
                        data_seed=rng.getrandbits(63) ^ v_index,
                        mtime=_epoch(version) + k,
                        netcdf_format="NETCDF4_CLASSIC",
                    )
                )
    return plans, len(picked), n_versions


def _cmip5_plans(
    root: Path, datasets: int, seed: int, files_per_version: int | None
) -> tuple[list[_FilePlan], int, int]:
    rng = random.Random(seed)
    combos = [(m, e, r) for r in range(1, 1000) for m in CMIP5_MODELS for e in CMIP5_EXPERIMENTS]
    picked = rng.sample(combos[: max(datasets * 2, 32)], k=min(datasets, len(combos)))
    table_md5 = hashlib.md5(b"Amon").hexdigest()
    plans: list[_FilePlan] = []
    n_versions = 0
    for i, (model, experiment, real) in enumerate(picked):
        institute = CMIP5_MODELS[model]
        ensemble = f"r{real}i1p1"
        facets = cmip5_facets(model, experiment, real)
        versions = _version_dates(rng, 2 if i == 0 or rng.random() < 0.5 else 1)
        n_versions += len(versions)
        for v_index, version in enumerate(versions):
            directory = root / CMIP5.directory(facets, version)
            nfiles = files_per_version or rng.randint(2, 3)
            for variable, var_attrs in CMIP5_VARIABLES.items():
                for k in range(nfiles):
                    start = dt.date(1850 + k, 1, 1)
                    label = _time_range("mon", start)[2]
                    name = f"{variable}_Amon_{model}_{experiment}_{ensemble}_{label}.nc"
                    attrs: dict[str, object] = {
                        "institution": INSTITUTIONS[institute],
                        "institute_id": institute,
                        "experiment_id": experiment,
                        "source": f"{model} sample configuration",
                        "model_id": model,
                        "forcing": "GHG, SA, Oz, LU, Sl, Vl",
                        "parent_experiment_id": "piControl",
                        "parent_experiment_rip": "r1i1p1",
                        "branch_time": 0.0,
                        "contact": "esgf-ha sample data",
                        "history": "generated by esgf-ha sample-data",
                        "references": "none",
                        "initialization_method": np.int32(1),
                        "physics_version": np.int32(1),
                        "tracking_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        "product": "output",
                        "experiment": EXPERIMENT_TITLES[experiment],
                        "frequency": "mon",
                        "creation_date": f"{version[:4]}-{version[4:6]}-{version[6:]}T00:00:00Z",
                        "Conventions": "CF-1.4",
                        "project_id": "CMIP5",
                        "table_id": f"Table Amon (26 July 2011) {table_md5}",
                        "title": f"{model} model output prepared for CMIP5 {experiment}",
                        "parent_experiment": "pre-industrial control",
                        "modeling_realm": "atmos",
                        "realization": np.int32(real),
                        "cmor_version": "2.9.1",
                    }
                    plans.append(
                        _FilePlan(
                            path=directory / variable / name,
                            attrs=attrs,
                            variable=variable,
                            var_attrs=var_attrs,
                            frequency="mon",
                            start=start,
                            data_seed=rng.getrandbits(63) ^ v_index,
                            mtime=_epoch(version) + k,
                            netcdf_format="NETCDF3_CLASSIC",
                        )
                    )
    return plans, len(picked), n_versions


def generate(
    root: Path,
    project: str = "CMIP6",
    datasets: int = 4,
    seed: int = 1,
    *,
    files_per_version: int | None = None,
    on_planned: Callable[[int], None] | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> SampleSummary:
    """Write `datasets` datasets (each with one or two versions of time-split files)."""
    root = Path(root)
    make = _cmip6_plans if project.upper() == "CMIP6" else _cmip5_plans
    plans, n_datasets, n_versions = make(root, datasets, seed, files_per_version)
    if on_planned is not None:
        on_planned(len(plans))
    summary = SampleSummary(root, project.upper(), n_datasets, n_versions)
    for plan in plans:
        summary.bytes += _write(plan)
        summary.files.append(plan.path)
        if on_file is not None:
            on_file(plan.path)
    return summary
