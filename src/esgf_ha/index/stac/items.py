"""Dataset and File records as STAC items; facet counts as STAC collections.

An item is one dataset version: its id is the dataset's `instance_id` (or, for a replica record,
its esg-search id `instance_id|data_node`, so ids stay unique); its assets are its files, each
with the file extension's size and checksum (a multihash) and, under the alternate-assets
extension, the same file at every other site that holds a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

from esgf_ha.index.stac.vocabulary import (
    NOT_PROPERTIES,
    STAC_NAMES,
    collection_id,
    prefix,
)

STAC_VERSION = "1.1.0"  # of items and collections; the API is STAC API 1.0
FILE_EXT = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
ALTERNATE_EXT = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
CMIP6_EXT = "https://stac-extensions.github.io/cmip6/v1.0.0/schema.json"
# multihash prefixes (function code, digest length) of the checksum types ESGF records carry
_MULTIHASH = {"SHA256": "1220", "SHA-256": "1220", "MD5": "d510", "SHA1": "1114", "SHA512": "1340"}

Record = Mapping[str, object]


def item_id(record: Record) -> str:
    if record.get("replica") or not record.get("instance_id"):
        return str(record["id"])
    return str(record["instance_id"])


def _one(value: object) -> object:
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


def multihash(checksum: object, kind: object) -> str | None:
    code = _MULTIHASH.get(str(_first(kind) or "").upper())
    digest = _first(checksum)
    if code is None or not isinstance(digest, str):
        return None
    return code + digest.lower()


def _lon(x: float) -> float:
    return x if -180 <= x <= 180 else ((x + 180) % 360) - 180


def extent_bbox(record: Record) -> list[float] | None:
    """[west, south, east, north] in -180..180; west > east when it crosses the antimeridian."""
    try:
        west, south, east, north = (
            float(_first(record[k]))  # type: ignore[arg-type]
            for k in ("west_degrees", "south_degrees", "east_degrees", "north_degrees")
        )
    except (KeyError, TypeError, ValueError):
        return None
    if east - west >= 360:
        return [-180.0, south, 180.0, north]
    return [_lon(west), south, _lon(east), north]


def geometry(bbox: Sequence[float]) -> dict[str, object]:
    west, south, east, north = bbox

    def ring(w: float, e: float) -> list[list[float]]:
        return [[w, south], [e, south], [e, north], [w, north], [w, south]]

    if west <= east:
        return {"type": "Polygon", "coordinates": [ring(west, east)]}
    return {"type": "MultiPolygon", "coordinates": [[ring(west, 180.0)], [ring(-180.0, east)]]}


def properties(record: Record) -> dict[str, object]:
    project = str(_first(record.get("project")) or "esgf")
    out: dict[str, object] = {"datetime": None}
    for name, stac_name in STAC_NAMES.items():
        if name in record:
            out[stac_name] = _one(record[name])
    if "start_datetime" not in out or "end_datetime" not in out:
        out.pop("start_datetime", None)
        out.pop("end_datetime", None)
        out["datetime"] = out.get("updated")
    pre = prefix(project)
    for name, value in record.items():
        if name in NOT_PROPERTIES or name in STAC_NAMES:
            continue
        out[pre + name] = _one(value)
    return out


def file_urls(record: Record) -> dict[str, str]:
    """Service name → URL of a File record's `url` entries (`URL|mime|service`)."""
    urls: dict[str, str] = {}
    raw = record.get("url")
    for entry in raw if isinstance(raw, list) else [raw] if raw else []:
        parts = str(entry).split("|")
        if len(parts) >= 3:
            urls.setdefault(parts[2], parts[0])
    return urls


def asset(file: Record, copies: Sequence[Record]) -> dict[str, object]:
    urls = file_urls(file)
    out: dict[str, object] = {
        "href": urls.get("HTTPServer") or next(iter(urls.values()), ""),
        "type": "application/netcdf",
        "title": str(file.get("title", "")),
        "roles": ["data"],
    }
    if "size" in file:
        out["file:size"] = int(float(_first(file["size"])))  # type: ignore[arg-type]
    digest = multihash(file.get("checksum"), file.get("checksum_type"))
    if digest:
        out["file:checksum"] = digest
    alternate: dict[str, object] = {}
    for copy in copies:
        href = file_urls(copy).get("HTTPServer")
        if href:
            node = str(copy.get("data_node", ""))
            alternate[node] = {"title": f"copy at {node}", "href": href}
    if "OPENDAP" in urls:
        alternate["opendap"] = {"title": "OPeNDAP", "href": urls["OPENDAP"].removesuffix(".html")}
    if alternate:
        out["alternate"] = alternate
    return out


def item(
    record: Record,
    files: Sequence[Record],
    copy_files: Mapping[str, Sequence[Record]],
    base: str,
) -> dict[str, object]:
    """A STAC item for one Dataset record; `copy_files` maps a file's `instance_id` to the
    File records of the same file at other sites."""
    project = str(_first(record.get("project")) or "esgf")
    cid = collection_id(project)
    iid = item_id(record)
    bbox = extent_bbox(record)
    assets: dict[str, object] = {}
    for f in sorted(files, key=lambda f: str(f.get("title", f.get("id")))):
        key = str(f.get("title") or f.get("id"))
        while key in assets:
            key += "+"
        assets[key] = asset(f, copy_files.get(str(f.get("instance_id")), ()))
    extensions = [FILE_EXT, ALTERNATE_EXT] + ([CMIP6_EXT] if cid == "cmip6" else [])
    out: dict[str, object] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": iid,
        "collection": cid,
        "geometry": geometry(bbox) if bbox else None,
        **({"bbox": bbox} if bbox else {}),
        "properties": properties(record),
        "links": item_links(base, cid, iid, str(record["id"])),
        "assets": assets,
    }
    return out


def item_links(base: str, cid: str, iid: str, record_id: str) -> list[dict[str, str]]:
    collection = f"{base}/stac/collections/{quote(cid, safe='')}"
    return [
        {"rel": "self", "type": "application/geo+json",
         "href": f"{collection}/items/{quote(iid, safe='')}"},
        {"rel": "parent", "type": "application/json", "href": collection},
        {"rel": "collection", "type": "application/json", "href": collection},
        {"rel": "root", "type": "application/json", "href": f"{base}/stac"},
        {"rel": "via", "type": "application/json", "title": "the esg-search record",
         "href": f"{base}/esg-search/search?format=application%2Fsolr%2Bjson&type=Dataset"
                 f"&id={quote(record_id, safe='')}"},
    ]  # fmt: skip


def collection(
    project: str,
    count: int,
    facets: Mapping[str, Iterable[tuple[str, int]]],
    base: str,
) -> dict[str, object]:
    """A collection from the facet counts of its project's datasets (summaries) and of the
    extent fields (`datetime_start`, `west_degrees`, ...)."""
    cid = collection_id(project)
    pre = prefix(project)

    def values(name: str) -> list[str]:
        return [v for v, n in facets.get(name, ()) if n > 0]

    def number(name: str, pick: Callable[[list[float]], float]) -> float | None:
        nums = []
        for v in values(name):
            try:
                nums.append(float(v))
            except ValueError:
                continue
        return pick(nums) if nums else None

    starts, stops = sorted(values("datetime_start")), sorted(values("datetime_stop"))
    west, east = number("west_degrees", min), number("east_degrees", max)
    south, north = number("south_degrees", min), number("north_degrees", max)
    if None in (west, south, east, north):
        bbox = [-180.0, -90.0, 180.0, 90.0]
    else:
        bbox = extent_bbox(
            {"west_degrees": west, "south_degrees": south,
             "east_degrees": east, "north_degrees": north}
        ) or [-180.0, -90.0, 180.0, 90.0]  # fmt: skip
    summaries = {
        pre + name: values(name)
        for name in facets
        if name not in ("datetime_start", "datetime_stop") and not name.endswith("_degrees")
    }
    here = f"{base}/stac/collections/{quote(cid, safe='')}"
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": cid,
        "title": project,
        "description": f"{project} datasets of this index: one item per dataset version "
        f"({count} in all, replicas included).",
        "license": "other",
        "keywords": [project, "ESGF"],
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {
                "interval": [[starts[0] if starts else None, stops[-1] if stops else None]]
            },
        },  # fmt: skip
        "summaries": {k: v for k, v in summaries.items() if v},
        "links": [
            {"rel": "self", "type": "application/json", "href": here},
            {"rel": "parent", "type": "application/json", "href": f"{base}/stac"},
            {"rel": "root", "type": "application/json", "href": f"{base}/stac"},
            {"rel": "items", "type": "application/geo+json", "href": f"{here}/items"},
            {"rel": "queryables", "type": "application/schema+json", "href": f"{here}/queryables"},
        ],  # fmt: skip
    }
