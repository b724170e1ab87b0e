"""Small CMIP6-like netCDF files in a DRS tree, and their records published to an index
for a given data node (the records' URLs point at that node)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np

from esgf_ha.records.build import FileInfo, build_records
from esgf_ha.records.drs import CMIP6

FACETS = {
    "mip_era": "CMIP6",
    "activity_drs": "CMIP",
    "institution_id": "MRI",
    "source_id": "MRI-ESM2-0",
    "experiment_id": "historical",
    "member_id": "r1i1p1f1",
    "table_id": "Amon",
    "variable_id": "tas",
    "grid_label": "gn",
}


@dataclass
class DrsDataset:
    facets: dict[str, str]
    version: str
    files: list[FileInfo]
    paths: list[Path]  # on disk
    rels: list[str] = field(default_factory=list)  # below the root

    @property
    def master_id(self) -> str:
        return CMIP6.master_id(self.facets)

    @property
    def instance_id(self) -> str:
        return f"{self.master_id}.v{self.version}"


def write_file(path: Path, facets: dict[str, str], year: int, seed: int) -> None:
    variable = facets["variable_id"]
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 4)
        nc.createDimension("lon", 36)
        nc.createDimension("bnds", 2)
        t = nc.createVariable("time", "f8", ("time",))
        t.standard_name, t.units, t.calendar, t.axis = (
            "time",
            "days since 1850-01-01",
            "noleap",
            "T",
        )
        t.bounds = "time_bnds"
        base = 365.0 * (year - 1850)
        t[:] = base + np.arange(12) * 30.0 + 15.0
        tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
        tb[:] = np.stack([base + np.arange(12) * 30.0, base + np.arange(1, 13) * 30.0], axis=1)
        la = nc.createVariable("lat", "f8", ("lat",))
        la.standard_name, la.units, la.axis = "latitude", "degrees_north", "Y"
        la[:] = [-67.5, -22.5, 22.5, 67.5]
        lo = nc.createVariable("lon", "f8", ("lon",))
        lo.standard_name, lo.units, lo.axis = "longitude", "degrees_east", "X"
        lo[:] = np.arange(36) * 10.0
        h = nc.createVariable("height", "f8", ())
        h.standard_name, h.units, h.axis, h.positive = "height", "m", "Z", "up"
        h.assignValue(2.0)
        v = nc.createVariable(variable, "f4", ("time", "lat", "lon"), fill_value=np.float32(1e20))
        v.standard_name, v.long_name, v.units = (
            "air_temperature",
            "Near-Surface Air Temperature",
            "K",
        )
        v.coordinates = "height"
        v.missing_value = np.float32(1e20)
        v[:] = 280.0 + np.random.default_rng(seed).random((12, 4, 36), dtype="f4")
        nc.setncatts(
            {
                **{k: facets[k] for k in ("mip_era", "institution_id", "source_id")},
                "activity_id": facets["activity_drs"],
                "experiment_id": facets["experiment_id"],
                "variant_label": facets["member_id"],
                "table_id": facets["table_id"],
                "variable_id": variable,
                "grid_label": facets["grid_label"],
                "frequency": "mon",
                "realm": "atmos",
                "product": "model-output",
                "tracking_id": f"hdl:21.14100/{uuid.UUID(int=seed + 1)}",
                "Conventions": "CF-1.7 CMIP-6.2",
                "realization_index": np.int32(1),
            }
        )


def write_dataset(
    root: Path,
    version: str = "20190222",
    nfiles: int = 2,
    seed: int = 0,
    **facets: str,
) -> DrsDataset:
    drs = {**FACETS, **facets}
    directory = CMIP6.directory(drs, version)
    files, paths, rels = [], [], []
    for i in range(nfiles):
        year = 1850 + i
        name = (
            f"{drs['variable_id']}_{drs['table_id']}_{drs['source_id']}_{drs['experiment_id']}_"
            f"{drs['member_id']}_{drs['grid_label']}_{year}01-{year}12.nc"
        )
        path = root / directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, drs, year, seed * 100 + i)
        data = path.read_bytes()
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with netCDF4.Dataset(path) as nc:
            tracking = str(nc.tracking_id)
        files.append(
            FileInfo(
                name=name,
                size=len(data),
                checksum=hashlib.sha256(data).hexdigest(),
                tracking_id=tracking,
                mtime=mtime,
            )
        )
        paths.append(path)
        rels.append(f"{directory}/{name}")
    return DrsDataset(drs, version, files, paths, rels)


def batch_for(
    datasets: list[DrsDataset],
    data_node: str,
    url_base: str,
    root_name: str = "esg_dataroot",
    replica: bool = False,
) -> dict[str, object]:
    out = []
    for d in datasets:
        dataset, files = build_records(
            CMIP6,
            d.facets,
            d.version,
            d.files,
            data_node=data_node,
            index_node="127.0.0.1",
            root_name=root_name,
            url_base=url_base,
            opendap=True,
            replica=replica,
        )
        out.append({"dataset": dataset, "files": files})
    return {"datasets": out}


def write_types_file(path: Path) -> None:
    """Variables of the kinds CMIP files carry besides floats: packed int16, int8 flags,
    a char array of labels and an integer scalar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.createDimension("x", 5)
        nc.createDimension("n", 6)
        packed = nc.createVariable("packed", "i2", ("x",))
        packed.scale_factor, packed.add_offset = 0.5, 10.0
        packed[:] = [10.5, 11.0, 11.5, 12.0, 12.5]
        nc.createVariable("flags", "i1", ("x",))[:] = [-1, 0, 1, 2, 3]
        labels = np.array(["ab", "cde", "", "f", "ghijkl"], dtype="S6")
        nc.createVariable("label", "S1", ("x", "n"))[:] = netCDF4.stringtochar(labels)
        nc.createVariable("count", "i4", ()).assignValue(42)
