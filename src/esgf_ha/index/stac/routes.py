"""The HTTP handlers of the STAC API, mounted by the index app under `/stac`.

Handlers only parse, call the Searcher (which calls IndexService) in a worker thread, and
render; errors are the index package's, mapped to statuses by the app with `error_response`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from esgf_ha.index.errors import BadRequest, NotFound
from esgf_ha.index.http.search import read_body
from esgf_ha.index.service import IndexService
from esgf_ha.index.stac import openapi
from esgf_ha.index.stac.items import STAC_VERSION
from esgf_ha.index.stac.search import (
    Page,
    Searcher,
    StacQuery,
    apply_fields,
    from_get,
    from_post,
)
from esgf_ha.index.stac.vocabulary import FLAGS, NOT_PROPERTIES, STAC_NAMES, collection_id

Handler = Callable[[Request], Awaitable[Response]]
MAX_BODY = 1024 * 1024
GEOJSON = "application/geo+json"

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#fields",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
]


def error_response(status: int, message: str) -> Response:
    """STAC's error body (`code`, `description`) with the project's `ok`/`status`/`error`."""
    body = {"code": _CODES.get(status, "Error"), "description": message,
            "ok": False, "status": status, "error": message}  # fmt: skip
    return _json(body, status=status)


_CODES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge",
          500: "ServerError", 503: "NotReady"}  # fmt: skip


def _json(body: object, status: int = 200, media: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media)


def _base(request: Request) -> str:
    host = request.headers.get("host") or "localhost"
    return f"{request.url.scheme}://{host}"


async def _body(request: Request) -> object:
    raw = await read_body(request, MAX_BODY)
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None


def _links(base: str, projects: list[tuple[str, int]]) -> list[dict[str, object]]:
    links: list[dict[str, object]] = [
        {"rel": "self", "type": "application/json", "href": f"{base}/stac"},
        {"rel": "root", "type": "application/json", "href": f"{base}/stac"},
        {"rel": "conformance", "type": "application/json", "href": f"{base}/stac/conformance"},
        {"rel": "service-desc", "type": openapi.MEDIA_TYPE, "href": f"{base}/stac/api"},
        {"rel": "data", "type": "application/json", "href": f"{base}/stac/collections"},
        {"rel": "search", "type": GEOJSON, "method": "GET", "href": f"{base}/stac/search"},
        {"rel": "search", "type": GEOJSON, "method": "POST", "href": f"{base}/stac/search"},
        {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
         "type": "application/schema+json", "href": f"{base}/stac/queryables"},
        {"rel": "alternate", "type": "text/html", "title": "search page", "href": f"{base}/"},
    ]  # fmt: skip
    for project, _ in projects:
        cid = collection_id(project)
        links.append({"rel": "child", "type": "application/json", "title": project,
                      "href": f"{base}/stac/collections/{quote(cid, safe='')}"})  # fmt: skip
    return links


def _page_response(
    page: Page, q: StacQuery, base: str, self_href: str, next_link: dict, prev_link: dict
) -> Response:
    features = [apply_fields(f, q.fields) for f in page.features]
    links: list[dict[str, object]] = [
        {"rel": "self", "type": GEOJSON, "href": self_href},
        {"rel": "root", "type": "application/json", "href": f"{base}/stac"},
    ]
    if page.offset + page.limit < page.matched:
        links.append(next_link)
    if page.offset > 0:
        links.append(prev_link)
    return _json({
        "type": "FeatureCollection",
        "features": features,
        "links": links,
        "numberMatched": page.matched,
        "numberReturned": len(features),
        "context": {"returned": len(features), "limit": page.limit,
                    "matched": page.matched},
    }, media=GEOJSON)  # fmt: skip


def _get_links(request: Request, q: StacQuery) -> tuple[dict, dict]:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    path = f"{_base(request)}{request.url.path}"

    def at(offset: int) -> str:
        query = params + ([("token", str(offset))] if offset else [])
        return f"{path}?{urlencode(query)}" if query else path

    nxt = {"rel": "next", "type": GEOJSON, "method": "GET", "href": at(q.offset + q.limit)}
    prev = {"rel": "prev", "type": GEOJSON, "method": "GET",
            "href": at(max(0, q.offset - q.limit))}  # fmt: skip
    return nxt, prev


class StacRoutes:
    """The STAC handlers around the one Searcher they share; each search stops at
    `search_timeout` seconds (503), as esg-search's do."""

    def __init__(self, service: IndexService, search_timeout: float | None = None) -> None:
        self.service = service
        self.searcher = Searcher(service, search_timeout)

    async def landing(self, request: Request) -> Response:
        projects = await run_in_threadpool(self.searcher.projects)
        return _json({
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "esgf-ha",
            "title": "ESGF index (STAC API)",
            "description": "The datasets of this ESGF index as STAC items, one per dataset "
            "version; the same index answers the esg-search API at /esg-search/search.",
            "conformsTo": CONFORMANCE,
            "links": _links(_base(request), projects),
        })  # fmt: skip

    async def api_description(self, request: Request) -> Response:
        return _json(openapi.document(), media=openapi.MEDIA_TYPE)

    async def conformance(self, request: Request) -> Response:
        return _json({"conformsTo": CONFORMANCE})

    async def collections(self, request: Request) -> Response:
        base = _base(request)
        found = await run_in_threadpool(self.searcher.collections, base)
        return _json({
            "collections": found,
            "links": [
                {"rel": "self", "type": "application/json", "href": f"{base}/stac/collections"},
                {"rel": "root", "type": "application/json", "href": f"{base}/stac"},
                {"rel": "parent", "type": "application/json", "href": f"{base}/stac"},
            ],
        })  # fmt: skip

    def project_or_404(self, cid: str) -> tuple[str, int]:
        for project, count in self.searcher.projects():
            if collection_id(project) == cid:
                return project, count
        raise NotFound(f"no collection {cid!r}: the collections are listed at /stac/collections")

    async def one_collection(self, request: Request) -> Response:
        cid = request.path_params["cid"]
        base = _base(request)

        def build() -> dict[str, object]:
            project, count = self.project_or_404(cid)
            return self.searcher.collection(project, count, base)

        return _json(await run_in_threadpool(build))

    async def search_get(self, request: Request) -> Response:
        q = from_get(list(request.query_params.multi_items()))
        base = _base(request)
        page = await run_in_threadpool(self.searcher.search, q, base)
        nxt, prev = _get_links(request, q)
        return _page_response(page, q, base, str(request.url), nxt, prev)

    async def search_post(self, request: Request) -> Response:
        body = await _body(request)
        q = from_post(body)
        assert isinstance(body, dict)
        base = _base(request)
        page = await run_in_threadpool(self.searcher.search, q, base)
        href = f"{base}/stac/search"

        def at(offset: int) -> dict[str, object]:
            return {"rel": "next", "type": GEOJSON, "method": "POST", "href": href,
                    "merge": False, "body": {**body, "token": str(offset)}}  # fmt: skip

        prev = at(max(0, q.offset - q.limit)) | {"rel": "prev"}
        return _page_response(page, q, base, href, at(q.offset + q.limit), prev)

    async def search(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.search_post(request)
        return await self.search_get(request)

    async def collection_items(self, request: Request) -> Response:
        cid = request.path_params["cid"]
        await run_in_threadpool(self.project_or_404, cid)
        params = list(request.query_params.multi_items())
        if any(k in ("collections", "ids") for k, _ in params):
            raise BadRequest("collections and ids are parameters of /stac/search")
        q = from_get(params)
        q.collections = [cid]
        base = _base(request)
        page = await run_in_threadpool(self.searcher.search, q, base)
        nxt, prev = _get_links(request, q)
        return _page_response(page, q, base, str(request.url), nxt, prev)

    async def one_item(self, request: Request) -> Response:
        cid, iid = request.path_params["cid"], request.path_params["item_id"]
        q = StacQuery(collections=[cid], ids=[iid], limit=1)
        page = await run_in_threadpool(self.searcher.search, q, _base(request))
        if not page.features:
            raise NotFound(f"no item {iid!r} in collection {cid!r}")
        return _json(page.features[0], media=GEOJSON)

    def queryables_doc(self, base: str, cid: str | None) -> dict[str, object]:
        props: dict[str, object] = {
            "id": {"title": "item id (instance_id, or instance_id|data_node for a replica)",
                   "type": "string"},
            "collection": {"title": "collection (project)", "type": "string"},
            "start_datetime": {"type": "string", "format": "date-time"},
            "end_datetime": {"type": "string", "format": "date-time"},
            "updated": {"type": "string", "format": "date-time"},
        }  # fmt: skip
        projects = [
            p for p, _ in self.searcher.projects() if cid is None or collection_id(p) == cid
        ]
        fields = self.service.cores["Dataset"].field_names
        names = sorted(fields - NOT_PROPERTIES - set(STAC_NAMES))
        for project in projects:
            for name in names:
                kind = {"type": "boolean"} if name in FLAGS else {"type": "string"}
                props[f"{collection_id(project)}:{name}"] = kind
        here = f"{base}/stac" + (f"/collections/{cid}" if cid else "")
        return {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": f"{here}/queryables",
            "type": "object",
            "title": "Queryables",
            "description": "Record fields, also accepted without their collection prefix; "
            "any other property is absent from every item (compares as null).",
            "properties": props,
            "additionalProperties": True,
        }

    async def queryables(self, request: Request) -> Response:
        base = _base(request)
        cid = request.path_params.get("cid")
        if cid is not None:
            await run_in_threadpool(self.project_or_404, cid)
        doc = await run_in_threadpool(self.queryables_doc, base, cid)
        return _json(doc, media="application/schema+json")


def endpoints(
    service: IndexService, search_timeout: float | None = None
) -> list[tuple[str, str, Handler, list[str]]]:
    """(path, metrics name, handler, methods) for the app to mount."""
    r = StacRoutes(service, search_timeout)
    return [
        ("/stac", "stac_landing", r.landing, ["GET"]),
        ("/stac/", "stac_landing", r.landing, ["GET"]),
        ("/stac/conformance", "stac_conformance", r.conformance, ["GET"]),
        ("/stac/api", "stac_api", r.api_description, ["GET"]),
        ("/stac/queryables", "stac_queryables", r.queryables, ["GET"]),
        ("/stac/collections", "stac_collections", r.collections, ["GET"]),
        ("/stac/collections/{cid}", "stac_collection", r.one_collection, ["GET"]),
        ("/stac/collections/{cid}/queryables", "stac_queryables", r.queryables, ["GET"]),
        ("/stac/collections/{cid}/items", "stac_items", r.collection_items, ["GET"]),
        ("/stac/collections/{cid}/items/{item_id}", "stac_item", r.one_item, ["GET"]),
        ("/stac/search", "stac_search", r.search, ["GET", "POST"]),
    ]
