"""The OpenAPI 3.0 description of the STAC API (the landing page's `service-desc`)."""

from __future__ import annotations

from esgf_ha import __version__

MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.0"

_ERROR = {"description": "bad input: a JSON body with `code` and `description`"}
_SEARCH_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
     "description": text}
    for name, text in (
        ("collections", "comma-separated collection ids (projects, lower case)"),
        ("ids", "comma-separated item ids"),
        ("bbox", "west,south,east,north: datasets whose extent intersects it"),
        ("intersects", "a GeoJSON geometry, answered by its bounding box"),
        ("datetime", "RFC 3339 instant or interval a/b (open ends ..)"),
        ("limit", "items per page (1 to 1000)"),
        ("token", "paging token from a next/prev link"),
        ("filter", "CQL2 filter"),
        ("filter-lang", "cql2-text (default) or cql2-json"),
        ("fields", "fields to include (+name) or exclude (-name)"),
        ("sortby", "-properties.updated for newest first"),
    )
]  # fmt: skip


def _get(summary: str, params: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {
        "get": {
            "summary": summary,
            "parameters": params or [],
            "responses": {"200": {"description": "OK"}, "400": _ERROR, "404": _ERROR},
        }
    }


def _path_param(name: str) -> dict[str, object]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def document() -> dict[str, object]:
    search = _get("item search", _SEARCH_PARAMS)
    search["post"] = {
        "summary": "item search (JSON body with the same fields)",
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"description": "OK"}, "400": _ERROR, "413": _ERROR},
    }
    cid, iid = _path_param("collectionId"), _path_param("itemId")
    return {
        "openapi": "3.0.3",
        "info": {"title": "esgf-ha STAC API", "version": __version__},
        "paths": {
            "/stac": _get("landing page"),
            "/stac/conformance": _get("conformance classes"),
            "/stac/queryables": _get("queryable properties"),
            "/stac/collections": _get("collections, one per project"),
            "/stac/collections/{collectionId}": _get("a collection", [cid]),
            "/stac/collections/{collectionId}/queryables": _get("queryables", [cid]),
            "/stac/collections/{collectionId}/items": _get("items", [cid, *_SEARCH_PARAMS[2:]]),
            "/stac/collections/{collectionId}/items/{itemId}": _get("an item", [cid, iid]),
            "/stac/search": search,
        },
    }
