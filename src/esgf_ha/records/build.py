"""Build ESGF Dataset and File records the way esgcet 5.x does (spec §2.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from esgf_ha.records.drs import Project, instance_id, record_id


@dataclass
class FileInfo:
    name: str
    size: int
    checksum: str
    checksum_type: str = "SHA256"
    tracking_id: str = ""
    mtime: str | None = None  # ISO time of last modification
    subdir: str = ""  # below the version directory (CMIP5: the variable)
    extra: dict[str, object] = field(default_factory=dict)  # per-file facets


def build_records(
    project: Project,
    facets: dict[str, object],
    version: str,
    files: list[FileInfo],
    *,
    data_node: str,
    index_node: str,
    root_name: str,
    url_base: str | None = None,
    opendap: bool = False,
    replica: bool = False,
    extra: dict[str, object] | None = None,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """One Dataset record and its File records; `url_base` defaults to https://<data_node>."""
    drs = {k: str(v[0] if isinstance(v, list) else v) for k, v in facets.items()}
    master = project.master_id(drs)
    instance = instance_id(master, version)
    dataset_id = record_id(instance, data_node)
    base = (url_base or f"https://{data_node}").rstrip("/")
    directory = project.directory(drs, version)
    common: dict[str, object] = {
        "project": project.name,
        **{k: v for k, v in facets.items()},
        **(extra or {}),
        "data_node": data_node,
        "index_node": index_node,
        "version": version,
        "replica": replica,
        "latest": True,
        "retracted": False,
        "dataset_id_template_": project.dataset_id_template,
        "directory_format_template_": project.directory_template,
    }
    file_records = []
    for info in files:
        rel = "/".join(p for p in (directory, info.subdir, info.name) if p)
        urls = [f"{base}/thredds/fileServer/{root_name}/{rel}|application/netcdf|HTTPServer"]
        if opendap:
            urls.append(
                f"{base}/thredds/dodsC/{root_name}/{rel}.html|application/opendap-html|OPENDAP"
            )
        rec: dict[str, object] = {
            **common,
            **info.extra,
            "type": "File",
            "id": record_id(f"{instance}.{info.name}", data_node),
            "master_id": f"{master}.{info.name}",
            "instance_id": f"{instance}.{info.name}",
            "dataset_id": dataset_id,
            "title": info.name,
            "size": info.size,
            "checksum": [info.checksum],
            "checksum_type": [info.checksum_type],
            "url": urls,
            "publish_path": f"{root_name}/{rel}",
        }
        if info.tracking_id:
            rec["tracking_id"] = [info.tracking_id]
        if info.mtime:
            rec["timestamp"] = info.mtime
        file_records.append(rec)
    access = ["HTTPServer", "OPENDAP"] if opendap else ["HTTPServer"]
    dataset: dict[str, object] = {
        **common,
        "type": "Dataset",
        "id": dataset_id,
        "master_id": master,
        "instance_id": instance,
        "title": master,
        "number_of_files": len(files),
        "size": sum(f.size for f in files),
        "access": access,
    }
    if project.name == "CMIP6":
        dataset.setdefault("mip_era", "CMIP6")
    return dataset, file_records
