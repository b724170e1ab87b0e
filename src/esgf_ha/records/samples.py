"""Generated sample records (and small file bodies) for the demo and the tests.

Realistic identifiers and facets for CMIP6 and CMIP5, several versions of some datasets, and
files whose checksums are those of bytes we can write to disk, so downloads verify for real.
The netCDF sample data of the publisher is a different thing (`esgf-ha sample-data`).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from esgf_ha.records.build import FileInfo, build_records
from esgf_ha.records.drs import CMIP5, CMIP6, Project

CMIP6_SOURCES = {
    "CESM2": ("NCAR", ["AOGCM", "BGC"]),
    "MRI-ESM2-0": ("MRI", ["AOGCM", "AER", "CHEM"]),
    "IPSL-CM6A-LR": ("IPSL", ["AOGCM", "BGC"]),
    "UKESM1-0-LL": ("MOHC", ["AOGCM", "AER", "BGC", "CHEM"]),
    "MPI-ESM1-2-HR": ("MPI-M", ["AOGCM"]),
}
CMIP6_EXPERIMENTS = {
    "historical": "CMIP",
    "ssp585": "ScenarioMIP",
    "piControl": "CMIP",
    "amip": "CMIP",
}
CMIP6_VARIABLES = {
    "tas": ("Amon", "air_temperature", "Near-Surface Air Temperature", "K", "atmos", "mon"),
    "pr": ("Amon", "precipitation_flux", "Precipitation", "kg m-2 s-1", "atmos", "mon"),
    "tos": ("Omon", "sea_surface_temperature", "Sea Surface Temperature", "degC", "ocean", "mon"),
    "huss": ("day", "specific_humidity", "Near-Surface Specific Humidity", "1", "atmos", "day"),
}
CMIP5_MODELS = {"HadGEM2-ES": "MOHC", "inmcm4": "INM", "MPI-ESM-LR": "MPI-M", "CanESM2": "CCCma"}
CMIP5_EXPERIMENTS = ["historical", "rcp45", "rcp85", "piControl"]


@dataclass
class SampleDataset:
    dataset: dict[str, object]
    files: list[dict[str, object]]
    bodies: dict[str, bytes]  # publish_path -> file content


def _body(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _files(
    rng: random.Random, stem: str, years: list[int], subdir: str = ""
) -> tuple[list[FileInfo], dict[str, bytes]]:
    infos, bodies = [], {}
    for y0 in years:
        name = f"{stem}_{y0}01-{y0 + 9}12.nc"
        body = _body(rng, rng.randint(512, 4096))
        infos.append(
            FileInfo(
                name=name,
                size=len(body),
                checksum=hashlib.sha256(body).hexdigest(),
                tracking_id=f"hdl:21.14100/{uuid.UUID(int=rng.getrandbits(128))}",
                mtime="2024-03-01T12:00:00Z",
                subdir=subdir,
            )
        )
        bodies[name] = body
    return infos, bodies


class Placement(TypedDict, total=False):
    """Where sample records say their files are (defaults: example.org hosts)."""

    data_node: str
    index_node: str
    root_name: str
    url_base: str | None


def _sample(
    project: Project,
    facets: dict[str, object],
    version: str,
    infos: list[FileInfo],
    bodies: dict[str, bytes],
    where: Placement,
    extra: dict[str, object],
) -> SampleDataset:
    dataset, files = build_records(
        project,
        facets,
        version,
        infos,
        data_node=where.get("data_node", "esgf-data.example.org"),
        index_node=where.get("index_node", "esgf-index.example.org"),
        root_name=where.get("root_name", "esg_dataroot"),
        url_base=where.get("url_base"),
        extra=extra,
    )
    return SampleDataset(
        dataset, files, {str(f["publish_path"]): bodies[str(f["title"])] for f in files}
    )


def cmip6_facets(
    source: str, experiment: str, variable: str, member: int, *, activity_id: bool = False
) -> dict[str, object]:
    """The dataset facets of one sample CMIP6 dataset: those its DRS path is made of, and
    `activity_id` (a list in records, absent from paths) when asked for."""
    institution = CMIP6_SOURCES[source][0]
    activity = CMIP6_EXPERIMENTS[experiment]
    return {
        "mip_era": "CMIP6",
        "activity_drs": activity,
        **({"activity_id": [activity]} if activity_id else {}),
        "institution_id": institution,
        "source_id": source,
        "experiment_id": experiment,
        "member_id": f"r{member}i1p1f1",
        "table_id": CMIP6_VARIABLES[variable][0],
        "variable_id": variable,
        "grid_label": "gn",
    }


def cmip5_facets(model: str, experiment: str, realization: int) -> dict[str, object]:
    """The dataset facets of one sample CMIP5 dataset (monthly atmosphere)."""
    return {
        "product": "output1",
        "institute": CMIP5_MODELS[model],
        "model": model,
        "experiment": experiment,
        "time_frequency": "mon",
        "realm": "atmos",
        "cmor_table": "Amon",
        "ensemble": f"r{realization}i1p1",
    }


def cmip6_samples(count: int, *, seed: int = 1, **where: Unpack[Placement]) -> list[SampleDataset]:
    rng = random.Random(seed)
    out: list[SampleDataset] = []
    combos = [
        (s, e, v, m)
        for s in CMIP6_SOURCES
        for e in CMIP6_EXPERIMENTS
        for v in CMIP6_VARIABLES
        for m in (1, 2, 3)
    ]
    rng.shuffle(combos)
    for source, experiment, variable, member in combos[:count]:
        institution, source_type = CMIP6_SOURCES[source]
        table, standard, long_name, units, realm, freq = CMIP6_VARIABLES[variable]
        variant = f"r{member}i1p1f1"
        facets = cmip6_facets(source, experiment, variable, member, activity_id=True)
        extra: dict[str, object] = {
            "variant_label": variant,
            "sub_experiment_id": "none",
            "frequency": freq,
            "realm": [realm],
            "source_type": source_type,
            "product": "model-output",
            "nominal_resolution": "100 km",
            "variable": variable,
            "cf_standard_name": standard,
            "variable_long_name": long_name,
            "variable_units": units,
            "model_cohort": "Registered",
            "data_specs_version": "01.00.29",
            "experiment_title": f"{experiment} simulation",
            "datetime_start": "1850-01-01T00:00:00Z",
            "datetime_stop": "1869-12-31T00:00:00Z",
            "north_degrees": 90.0,
            "south_degrees": -90.0,
            "west_degrees": 0.0,
            "east_degrees": 360.0,
        }
        versions = ["20190308"] if rng.random() < 0.7 else ["20190308", "20200101"]
        for version in versions:
            stem = f"{variable}_{table}_{source}_{experiment}_{variant}_gn"
            infos, bodies = _files(rng, stem, [1850, 1860])
            out.append(_sample(CMIP6, facets, version, infos, bodies, where, extra))
    return out


def cmip5_samples(count: int, *, seed: int = 2, **where: Unpack[Placement]) -> list[SampleDataset]:
    rng = random.Random(seed)
    out: list[SampleDataset] = []
    combos = [(m, e, r) for m in CMIP5_MODELS for e in CMIP5_EXPERIMENTS for r in (1, 2)]
    rng.shuffle(combos)
    for model, experiment, real in combos[:count]:
        ensemble = f"r{real}i1p1"
        facets = cmip5_facets(model, experiment, real)
        infos, bodies = [], {}
        for variable in ("tas", "pr"):
            stem = f"{variable}_Amon_{model}_{experiment}_{ensemble}"
            i, b = _files(rng, stem, [1850], subdir=variable)
            for info in i:
                info.checksum_type = "SHA256"
                info.extra = {"variable": variable}
            infos += i
            bodies.update(b)
        extra: dict[str, object] = {
            "variable": ["tas", "pr"],
            "experiment_family": "All",
            "forcing": "Nat,Ant",
            "format": "netCDF, CF-1.4",
            "drs_id": "",
            "datetime_start": "1850-01-01T00:00:00Z",
            "datetime_stop": "1859-12-31T00:00:00Z",
        }
        master_title = f"{model} model output prepared for CMIP5 {experiment}"
        sample = _sample(CMIP5, facets, "20110916", infos, bodies, where, extra)
        sample.dataset["drs_id"] = sample.dataset["master_id"]
        sample.dataset["title"] = master_title
        sample.dataset["description"] = [f"{model} {experiment} monthly atmosphere fields"]
        out.append(sample)
    return out


def as_batch(samples: list[SampleDataset]) -> dict[str, object]:
    return {"datasets": [{"dataset": s.dataset, "files": s.files} for s in samples]}


def write_bodies(samples: list[SampleDataset], root: Path, root_name: str = "esg_dataroot") -> None:
    """Write the sample files under `root` at their DRS paths (below the root name)."""
    for sample in samples:
        for publish_path, body in sample.bodies.items():
            rel = (
                publish_path.split("/", 1)[1]
                if publish_path.startswith(root_name + "/")
                else publish_path
            )
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
