"""Item search: STAC parameters (GET query or POST body) → the engine's SearchRequest, and
the search itself through IndexService, as esg-search runs it.

A STAC search is the esg-search Dataset search with the same constraints plus `replica=false`
(replicas are assets' alternates, not items of their own) unless the filter names `replica`
or an id names a replica record: the counts and ids equal esg-search's for that question.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from esgf_ha.index import query as lucene
from esgf_ha.index.errors import BadRequest
from esgf_ha.index.params import SearchRequest, parse_search
from esgf_ha.index.service import IndexService
from esgf_ha.index.stac import filters, items
from esgf_ha.index.stac.vocabulary import collection_id, facets_of

DEFAULT_LIMIT = 10
MAX_LIMIT = 1_000  # larger limits are served as this many (OGC API Features' rule)
MAX_FILES = 100_000  # files read for one page of items
FILE_PAGE = 10_000
MAX_IDS = 1_000


@dataclass
class Fields:
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    # an explicit empty `include` (POST) starts from the default set rather than the whole item
    from_default: bool = False


# what an empty `fields` asks for
DEFAULT_FIELDS = ("type", "stac_version", "id", "geometry", "bbox", "links", "assets",
                  "collection", "properties.datetime", "properties.start_datetime",
                  "properties.end_datetime")  # fmt: skip


@dataclass
class StacQuery:
    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    start: str | None = None
    end: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    filter: dict[str, object] | None = None
    fields: Fields | None = None
    sort_newest: bool = False


# -- parsing ----------------------------------------------------------------------------------
def _list(value: object, name: str) -> list[str]:
    if isinstance(value, str):
        out = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        out = list(value)
    else:
        raise BadRequest(f"{name} must be a list of strings (or a comma-separated string)")
    if len(out) > MAX_IDS:
        raise BadRequest(f"{name}: at most {MAX_IDS} values")
    return out


def _bbox(value: object, *, text: bool) -> tuple[float, float, float, float]:
    if text != isinstance(value, str) or not isinstance(value, str | list):
        raise BadRequest(
            "bbox must be " + ("west,south,east,north" if text else "an array of 4 numbers")
        )
    parts: Sequence[object] = value.split(",") if isinstance(value, str) else value
    try:
        nums = [float(p) for p in parts]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRequest("bbox must be four numbers: west,south,east,north") from None
    if len(nums) == 6:  # 3D: drop the heights
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4:
        raise BadRequest("bbox must be four numbers: west,south,east,north")
    west, south, east, north = nums
    if south > north:
        raise BadRequest("bbox: south is above north")
    return west, south, east, north


_GEOMETRIES = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
               "Polygon": 2, "MultiPolygon": 3}  # fmt: skip


def _intersects(value: object) -> tuple[float, float, float, float]:
    """A GeoJSON geometry, answered by its bounding box: a dataset's extent is a box, so a
    box intersecting the geometry's box is the test esg-search's `bbox` makes."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadRequest("intersects must be a GeoJSON geometry") from None
    points: list[list[float]] = []
    _positions(value, points, 0)
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return min(lons), min(lats), max(lons), max(lats)


def _positions(value: object, points: list[list[float]], depth: int) -> None:
    if not isinstance(value, dict) or value.get("type") not in (*_GEOMETRIES, "GeometryCollection"):
        raise BadRequest(f"intersects must be a GeoJSON geometry ({', '.join(_GEOMETRIES)})")
    if value["type"] == "GeometryCollection":
        members = value.get("geometries")
        if not isinstance(members, list) or not members or depth > 4:
            raise BadRequest("intersects: a GeometryCollection needs geometries")
        for member in members:
            _positions(member, points, depth + 1)
        return

    def walk(coords: object, depth: int) -> None:
        if not isinstance(coords, list) or not coords:
            raise BadRequest("intersects: invalid coordinates")
        if depth == 0:
            if len(coords) < 2 or not all(isinstance(c, int | float) for c in coords):
                raise BadRequest("intersects: a position is [longitude, latitude]")
            points.append([float(coords[0]), float(coords[1])])
            return
        for inner in coords:
            walk(inner, depth - 1)

    walk(value.get("coordinates"), _GEOMETRIES[str(value["type"])])
    if len(points) > 100_000:
        raise BadRequest("intersects: at most 100000 positions")


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _instant(text: str) -> str | None:
    if text in ("", ".."):
        return None
    try:
        if not _RFC3339.fullmatch(text):
            raise ValueError(text)
        datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"invalid datetime {text!r}: use RFC 3339, e.g. 2000-01-01T00:00:00Z"
        ) from None
    return text.upper() if text.endswith("z") else text


def _datetime(value: object) -> tuple[str | None, str | None]:
    if not isinstance(value, str):
        raise BadRequest("datetime must be a string: an instant or an interval a/b")
    if "/" in value:
        low, _, high = value.partition("/")
        start, end = _instant(low), _instant(high)
        if start is None and end is None:
            raise BadRequest("datetime interval must have at least one closed end")
        if start and end and start > end:
            raise BadRequest("datetime interval ends before it starts")
        return start, end
    at = _instant(value)
    if at is None:
        raise BadRequest("datetime must not be empty")
    return at, at


def _limit(value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise BadRequest("limit must be a positive integer") from None
    if number < 1:
        raise BadRequest("limit must be a positive integer")
    return min(number, MAX_LIMIT)


def _offset(value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise BadRequest("invalid paging token") from None
    if number < 0:
        raise BadRequest("invalid paging token")
    return number


def _fields_text(value: str) -> Fields:
    out = Fields(from_default=True)
    for part in (p.strip() for p in value.split(",")):
        if part.startswith("-"):
            out.exclude.append(part[1:])
        elif part:
            out.include.append(part.lstrip("+"))
    return out


def _sortby(value: object) -> bool:
    """True for newest first (the only order besides publication order the engine keeps)."""
    keys: list[tuple[str, str]] = []
    if isinstance(value, str):
        for part in (p.strip() for p in value.split(",") if p.strip()):
            direction = "desc" if part.startswith("-") else "asc"
            keys.append((part.lstrip("+-"), direction))
    elif isinstance(value, list):
        for entry in value:
            if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
                raise BadRequest('sortby entries must be {"field": ..., "direction": ...}')
            keys.append((entry["field"], str(entry.get("direction", "asc"))))
    else:
        raise BadRequest("sortby must be a string or a list")
    if not keys:
        return False
    if len(keys) == 1 and keys[0][0] in ("updated", "properties.updated") and keys[0][1] == "desc":
        return True
    raise BadRequest(
        "unsupported sortby: items come in publication order, or newest first with "
        "sortby=-properties.updated"
    )


def _set_common(q: StacQuery, name: str, value: object) -> bool:
    """Set what GET and POST searches spell alike; False for a parameter that differs."""
    if name == "collections":
        q.collections = _list(value, name)
    elif name == "ids":
        q.ids = _list(value, name)
    elif name == "intersects":
        q.bbox = _intersects(value)
    elif name == "datetime":
        q.start, q.end = _datetime(value)
    elif name == "limit":
        q.limit = _limit(value)
    elif name == "token":
        q.offset = _offset(value)
    elif name == "filter-crs":
        _crs(value)
    elif name == "sortby":
        q.sort_newest = _sortby(value)
    else:
        return False
    return True


def from_get(params: Sequence[tuple[str, str]]) -> StacQuery:
    q = StacQuery()
    lang = None
    raw_filter = None
    seen = set()
    for name, value in params:
        if name in seen:
            raise BadRequest(f"parameter {name} given more than once")
        seen.add(name)
        if _set_common(q, name, value):
            continue
        if name == "bbox":
            q.bbox = _bbox(value, text=True)
        elif name == "filter":
            raw_filter = value
        elif name == "filter-lang":
            lang = value
        elif name == "fields":
            q.fields = _fields_text(value)
        else:
            raise BadRequest(
                f"unsupported parameter {name!r}: item search takes collections, ids, bbox, "
                "datetime, limit, token, filter, filter-lang, fields and sortby"
            )
    if raw_filter is not None:
        q.filter = filters.parse(raw_filter, lang)
    if "bbox" in seen and "intersects" in seen:
        raise BadRequest("give bbox or intersects, not both")
    return q


def _crs(value: object) -> None:
    if value not in ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", None):
        raise BadRequest("filter-crs: only http://www.opengis.net/def/crs/OGC/1.3/CRS84")


def from_post(body: object) -> StacQuery:
    if not isinstance(body, dict):
        raise BadRequest("the search body must be a JSON object")
    q = StacQuery()
    for name, value in body.items():
        if value is None:
            if name == "fields":
                raise BadRequest('fields must be {"include": [...], "exclude": [...]}')
            continue
        if _set_common(q, name, value):
            continue
        if name == "bbox":
            q.bbox = _bbox(value, text=False)
        elif name == "filter":
            q.filter = filters.parse(value, body.get("filter-lang"))
        elif name == "fields":
            if not isinstance(value, dict):
                raise BadRequest('fields must be {"include": [...], "exclude": [...]}')
            q.fields = Fields(
                _list(value.get("include") or [], "fields.include"),
                _list(value.get("exclude") or [], "fields.exclude"),
                from_default="include" in value,
            )
        elif name == "filter-lang":
            continue
        else:
            raise BadRequest(f"unsupported search field {name!r}")
    if body.get("bbox") is not None and body.get("intersects") is not None:
        raise BadRequest("give bbox or intersects, not both")
    return q


# -- running ----------------------------------------------------------------------------------
@dataclass
class Page:
    matched: int
    features: list[dict[str, object]]
    offset: int
    limit: int


class Searcher:
    """Runs STAC searches through an IndexService, as the esg-search handlers do."""

    def __init__(self, service: IndexService, timeout: float | None = None) -> None:
        self.service = service
        # each engine search of a STAC request is held to the index's search_timeout
        self.timeout = timeout

    def projects(self) -> list[tuple[str, int]]:
        result, _ = self.service.search(
            self._request([("facets", "project"), ("limit", "0")]), self.timeout
        )
        counts = result.facets.get("project")
        return counts.pairs() if counts is not None else []

    def project_of(self, cid: str) -> str:
        for project, _ in self.projects():
            if collection_id(project) == cid.lower():
                return project
        return cid  # no such project: the constraint then matches nothing

    def _request(self, params: list[tuple[str, str]]) -> SearchRequest:
        return parse_search(params, self.service.known_fields())

    def request(self, q: StacQuery) -> SearchRequest:
        """The esg-search Dataset request that asks the same question."""
        req = SearchRequest(type="Dataset", limit=q.limit, offset=q.offset, sort=q.sort_newest)
        must: list[lucene.Node] = []
        named: set[str] = set()
        if q.filter is not None:
            known = self.service.known_fields()
            f = filters.translate(q.filter, known, self.project_of)
            req.constraints.update(f.constraints)
            req.flags.update(f.flags)
            named = f.fields
            if not isinstance(f.query, lucene.MatchAll):
                must.append(f.query)
        if q.collections is not None:
            projects = [self.project_of(c) for c in q.collections]
            if "project" in req.constraints:
                must.append(lucene.Bool(should=tuple(lucene.Term("project", p) for p in projects)))
            else:
                req.constraints["project"] = projects
        if q.ids is not None:
            must.append(_ids_node(q.ids))
        elif "replica" not in named and "id" not in named:
            req.flags.setdefault("replica", False)
        if q.start:
            req.start = q.start
        if q.end:
            req.end = q.end
        if q.bbox:
            req.bbox = q.bbox
        if len(must) == 1:
            req.query = must[0]
        elif must:
            req.query = lucene.Bool(must=tuple(must))
        return req

    def search(self, q: StacQuery, base: str) -> Page:
        req = self.request(q)
        result, docs = self.service.search(req, self.timeout)
        return Page(result.total, self.to_items(docs, base), q.offset, q.limit)

    def to_items(self, docs: list[dict[str, object]], base: str) -> list[dict[str, object]]:
        if not docs:
            return []
        instances = sorted({str(d["instance_id"]) for d in docs if "instance_id" in d})
        copies = self._all(
            SearchRequest(type="Dataset", constraints={"instance_id": instances}), MAX_FILES
        )
        dataset_ids = sorted({str(d["id"]) for d in copies} | {str(d["id"]) for d in docs})
        files = self._all(
            SearchRequest(type="File", constraints={"dataset_id": dataset_ids}), MAX_FILES
        )
        by_dataset: dict[str, list[dict[str, object]]] = {}
        by_instance: dict[str, list[dict[str, object]]] = {}
        for f in files:
            by_dataset.setdefault(str(f.get("dataset_id")), []).append(f)
            by_instance.setdefault(str(f.get("instance_id")), []).append(f)
        out = []
        for d in docs:
            own = by_dataset.get(str(d["id"]), [])
            others = {
                str(f.get("instance_id")): [
                    c for c in by_instance.get(str(f.get("instance_id")), [])
                    if c.get("dataset_id") != d["id"]
                ]
                for f in own
            }  # fmt: skip
            out.append(items.item(d, own, others, base))
        return out

    def _all(self, req: SearchRequest, cap: int) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        req.limit = FILE_PAGE
        while len(out) < cap:
            req.offset = len(out)
            result, docs = self.service.search(req, self.timeout)
            out.extend(docs)
            if not docs or len(out) >= result.total:
                break
        return out[:cap]

    def collections(self, base: str) -> list[dict[str, object]]:
        return [self.collection(p, n, base) for p, n in self.projects()]

    def collection(self, project: str, count: int, base: str) -> dict[str, object]:
        extent = ["datetime_start", "datetime_stop"] + [
            f"{side}_degrees" for side in ("west", "south", "east", "north")
        ]
        names = [n for n in facets_of(project) if n in self.service.known_fields()]
        req = SearchRequest(
            type="Dataset", limit=0, constraints={"project": [project]}, facets=names + extent
        )
        result, _ = self.service.search(req, self.timeout)
        return items.collection(project, count, result.facets, base)


def _ids_node(ids: list[str]) -> lucene.Node:
    return lucene.Bool(should=tuple(filters.id_node(i) for i in ids))


def apply_fields(feature: dict[str, object], fields: Fields | None) -> dict[str, object]:
    """The fields extension. Empty: the default set. `include`: only those fields (and the
    item's id and type). `exclude` alone: the whole item without them (the default set
    without them when an empty `include` was given). A field both included and excluded
    stays, and so does an included field inside an excluded one."""
    if fields is None:
        return feature
    include, exclude = fields.include, fields.exclude
    out: dict[str, object] = {}
    if include:
        for path in ("id", "type", "stac_version", "collection", *include):
            _copy_path(feature, out, path)
    elif not exclude or fields.from_default:
        for path in DEFAULT_FIELDS:
            _copy_path(feature, out, path)
    else:
        out = copy.deepcopy(feature)
    for path in exclude:
        if not any(i == path or i.startswith(path + ".") for i in include):
            _drop_path(out, path)
    return out


def _copy_path(src: Mapping[str, object], dst: dict[str, object], path: str) -> None:
    head, _, rest = path.partition(".")
    if head not in src:
        return
    if not rest:
        dst[head] = src[head]
        return
    inner = src[head]
    if isinstance(inner, Mapping):
        target = dst.setdefault(head, {})
        if isinstance(target, dict):
            _copy_path(inner, target, rest)


def _drop_path(dst: dict[str, object], path: str) -> None:
    head, _, rest = path.partition(".")
    if not rest:
        dst.pop(head, None)
    elif isinstance(dst.get(head), dict):
        _drop_path(dst[head], rest)  # type: ignore[arg-type]
