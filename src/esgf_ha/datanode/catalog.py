"""THREDDS catalogs (InvCatalog 1.0), rendered per request from index records or from the
directory tree — nothing is built at start-up.

Shape (spec §3.3/§3.5), as a THREDDS server writes catalogs when it serves them: services with
name/serviceType/base under one Compound service; a `<metadata inherited="true"><serviceName>`
on the top dataset; on every file dataset `urlPath` (plus the legacy `serviceName` attribute),
one `<access serviceName=… urlPath=…>` element per service the file is published with
(OPeNDAP only for files published with an OPeNDAP URL) and its size in THREDDS units
(`<dataSize units="Kbytes">40.94</dataSize>`); `name` and `ID` on every dataset; `xlink:title`
and `xlink:href` on every catalogRef. The HTML views are `catalog_html.py`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from esgf_ha.datanode.paths import catalog_path

XML_TYPE = "application/xml; charset=utf-8"
_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<catalog name={name} xmlns="http://www.unidata.ucar.edu/namespaces/thredds/InvCatalog/v1.0"'
    ' xmlns:xlink="http://www.w3.org/1999/xlink">\n'
)
# dataset/file properties copied from records into dataset catalogs
_SKIP = frozenset(
    {
        "id",
        "type",
        "url",
        "title",
        "master_id",
        "instance_id",
        "dataset_id",
        "size",
        "checksum",
        "checksum_type",
        "tracking_id",
        "timestamp",
        "_version_",
        "score",
        "version",
        "publish_path",
        "number_of_files",
        "access",
        "_timestamp",
        "retracted",
        "latest",
        "replica",
        "index_node",
        "data_node",
    }
)


def _services(requires_auth: bool) -> str:
    auth = "true" if requires_auth else "false"
    return (
        '  <service name="fileservice" serviceType="Compound" base="">\n'
        '    <service name="HTTPServer" serviceType="HTTPServer" base="/thredds/fileServer/"'
        ' desc="HTTPServer">\n'
        f'      <property name="requires_authorization" value="{auth}"/>\n'
        '      <property name="application" value="Web Browser"/>\n'
        '      <property name="application" value="Web Script"/>\n'
        "    </service>\n"
        '    <service name="OpenDAPServer" serviceType="OpenDAP" base="/thredds/dodsC/"'
        ' desc="OPENDAP">\n'
        f'      <property name="requires_authorization" value="{auth}"/>\n'
        "    </service>\n"
        "  </service>\n"
    )


def _prop(name: str, value: object) -> str:
    return f"    <property name={quoteattr(name)} value={quoteattr(str(value))}/>\n"


def _ref(title: str, href: str, indent: str = "  ") -> str:
    return (
        f"{indent}<catalogRef name={quoteattr(title)} xlink:title={quoteattr(title)}"
        f" xlink:href={quoteattr(href)}/>\n"
    )


def top_catalog(roots: Iterable[str], with_index: bool) -> str:
    out = [_HEAD.format(name=quoteattr("ESGF data node")), _services(False)]
    if with_index:
        out.append(_ref("Earth System Grid catalog", "esgcet/catalog.xml"))
    for root in roots:
        out.append(_ref(root, f"{root}/catalog.xml"))
    out.append("</catalog>\n")
    return "".join(out)


def master_head() -> str:
    return _HEAD.format(name=quoteattr("Earth System Grid catalog"))


def master_refs(instance_ids: Iterable[str]) -> str:
    # hrefs are relative to /thredds/catalog/esgcet/catalog.xml
    return "".join(_ref(i, catalog_path(i).removeprefix("esgcet/")) for i in instance_ids)


def master_tail() -> str:
    return "</catalog>\n"


def first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _file_url_path(rec: dict[str, Any]) -> str | None:
    if rec.get("publish_path"):
        return str(first(rec["publish_path"]))
    for url in rec.get("url") or []:
        link, _, service = str(url).rpartition("|")
        link = link.rpartition("|")[0]
        if service == "HTTPServer" and "/thredds/fileServer/" in link:
            return link.split("/thredds/fileServer/", 1)[1]
    return None


_UNITS = ("bytes", "Kbytes", "Mbytes", "Gbytes", "Tbytes")


def data_size(size: object) -> str:
    """`<dataSize>` as THREDDS writes it: decimal units, four significant digits."""
    try:
        value = float(str(size))
    except ValueError:
        return ""
    unit = 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value /= 1000
        unit += 1
    text = str(int(value)) if unit == 0 else f"{value:.4g}"
    return f'<dataSize units="{_UNITS[unit]}">{text}</dataSize>'


def _has_opendap(rec: dict[str, Any]) -> bool:
    return any(str(u).endswith("|OPENDAP") for u in rec.get("url") or [])


def _file_dataset(rec: dict[str, Any], metadata: str = "") -> list[str]:
    url_path = _file_url_path(rec)
    if url_path is None:
        return []
    size = rec.get("size", "")
    mod = str(rec.get("timestamp", "")).replace("T", " ").rstrip("Z")
    out = [
        f"    <dataset name={quoteattr(str(rec.get('title', '')))}"
        f" ID={quoteattr(str(rec.get('instance_id', '')))}"
        f' urlPath={quoteattr(url_path)} serviceName="HTTPServer">\n',
        metadata,
    ]
    fprops = [
        ("file_id", rec.get("master_id", "")),
        ("file_version", "1"),
        ("size", size),
        ("tracking_id", first(rec.get("tracking_id")) or ""),
        ("mod_time", mod),
        ("checksum", first(rec.get("checksum")) or ""),
        ("checksum_type", first(rec.get("checksum_type")) or ""),
    ]
    out.extend("  " + _prop(k, v) for k, v in fprops if v != "")
    out.append(f'      <access serviceName="HTTPServer" urlPath={quoteattr(url_path)}/>\n')
    if _has_opendap(rec):
        out.append(f'      <access serviceName="OpenDAPServer" urlPath={quoteattr(url_path)}/>\n')
    sized = data_size(size)
    if sized:
        out.append(f"      {sized}\n")
    if mod:
        out.append(f'      <date type="modified">{escape(_iso(mod))}</date>\n')
    out.append("    </dataset>\n")
    return out


def _iso(mod: str) -> str:
    return mod.replace(" ", "T") + ("Z" if mod and not mod.endswith("Z") else "")


def file_catalog(rec: dict[str, Any], requires_auth: bool) -> str:
    """One file of a dataset catalog alone (TDS's `?dataset=<ID>` subset, which
    thredds_crawler asks for every leaf)."""
    metadata = '      <metadata inherited="true"><serviceName>HTTPServer</serviceName></metadata>\n'
    out = [_HEAD.format(name=quoteattr(str(rec.get("instance_id", "")))), _services(requires_auth)]
    out.extend(_file_dataset(rec, metadata))
    out.append("</catalog>\n")
    return "".join(out)


def dataset_catalog(
    dataset: dict[str, Any], files: list[dict[str, Any]], requires_auth: bool
) -> str:
    instance = str(dataset["instance_id"])
    out = [_HEAD.format(name=quoteattr(instance)), _services(requires_auth)]
    out.append('  <property name="catalog_version" value="2"/>\n')
    out.append(f"  <dataset name={quoteattr(instance)} ID={quoteattr(instance)}>\n")
    out.append(_prop("dataset_id", dataset.get("master_id", "")))
    out.append(_prop("dataset_version", dataset.get("version", "")))
    if dataset.get("replica") is True:
        out.append(_prop("is_replica", "true"))
    for key, value in dataset.items():
        if key in _SKIP or key.startswith("_"):
            continue
        for v in value if isinstance(value, list) else [value]:
            out.append(_prop(key, v))
    # files name their services in <access> elements; the inherited one is what they all have
    out.append('    <metadata inherited="true">\n      <serviceName>HTTPServer</serviceName>\n')
    out.append("      <dataType>Grid</dataType>\n      <dataFormat>NetCDF</dataFormat>\n")
    out.append("    </metadata>\n")
    for rec in sorted(files, key=lambda r: str(r.get("title", ""))):
        out.extend(_file_dataset(rec))
    out.append("  </dataset>\n</catalog>\n")
    return "".join(out)


def directory_catalog(
    root: str, rel: str, directory: Path, root_path: Path, requires_auth: bool
) -> str:
    """A datasetScan-like listing of one directory below a data root; entries that are
    hidden or lead outside the root (symlinks) are left out, as the file server refuses them."""
    real_root = os.path.realpath(root_path)
    here = f"{root}/{rel}" if rel else root
    out = [_HEAD.format(name=quoteattr(here)), _services(requires_auth)]
    out.append(f"  <dataset name={quoteattr(here)} ID={quoteattr(here)}>\n")
    out.append('    <metadata inherited="true">\n      <serviceName>fileservice</serviceName>\n')
    out.append("    </metadata>\n")
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if os.path.commonpath([real_root, target]) != real_root:
                continue
        try:
            is_dir = entry.is_dir()
            st = entry.stat()
        except OSError:
            continue
        if is_dir:
            out.append(_ref(entry.name, f"{entry.name}/catalog.xml", "    "))
        elif entry.is_file():
            mod = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(
                f"    <dataset name={quoteattr(entry.name)} ID={quoteattr(here + '/' + entry.name)}"
                f" urlPath={quoteattr(here + '/' + entry.name)}>\n"
                f"      {data_size(st.st_size)}\n"
                f'      <date type="modified">{mod}</date>\n'
                "    </dataset>\n"
            )
    out.append("  </dataset>\n</catalog>\n")
    return "".join(out)
