"""The search page served at `/` of every index: static HTML, CSS and JavaScript shipped in
this package (no CDN, no web font), calling the esg-search JSON API of the same index.

The facet sets the page shows per project are the STAC collections' (`stac/vocabulary.py`),
written into the page when it is served, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import Response

from esgf_ha.index.errors import NotFound
from esgf_ha.index.stac.vocabulary import DEFAULT_FACETS, PROJECT_FACETS

Handler = Callable[[Request], Awaitable[Response]]
ASSETS = {"search.css": "text/css; charset=utf-8", "search.js": "text/javascript; charset=utf-8"}


class _Asset:
    def __init__(self, body: bytes, media_type: str) -> None:
        self.body = body
        self.media_type = media_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    def response(self, request: Request, cache: str) -> Response:
        headers = {"ETag": self.etag, "Cache-Control": cache}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def _page() -> bytes:
    facet_sets = {**{k: list(v) for k, v in PROJECT_FACETS.items()}, "*": list(DEFAULT_FACETS)}
    # `<` escaped so no value can close the script element it is written into
    embedded = orjson.dumps(facet_sets).replace(b"<", b"\\u003c")
    return _read("index.html").replace(b"__FACET_SETS__", embedded)


def endpoints() -> list[tuple[str, str, Handler, list[str]]]:
    """(path, metrics name, handler, methods) for the app to mount."""
    page = _Asset(_page(), "text/html; charset=utf-8")
    assets = {name: _Asset(_read(name), media) for name, media in ASSETS.items()}

    async def index(request: Request) -> Response:
        return page.response(request, "no-cache")

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            raise NotFound("no such asset")
        return found.response(request, "public, max-age=300")

    return [
        ("/", "page", index, ["GET"]),
        ("/web/{name}", "page_asset", asset, ["GET"]),
    ]
