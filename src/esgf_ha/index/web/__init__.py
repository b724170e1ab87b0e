"""The search page served at `/` of every index: static HTML, CSS and JavaScript shipped in
this package (no CDN, no web font), calling the esg-search JSON API of the same index.

The stylesheet and the script are written into the page when the app starts: one response,
and the script starts the first searches while the page is still being parsed. The facet
sets the page shows per project are the STAC collections' (`stac/vocabulary.py`), written in
the same way, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import Response

from esgf_ha.index.stac.vocabulary import DEFAULT_FACETS, PROJECT_FACETS

Handler = Callable[[Request], Awaitable[Response]]


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
    css, js = _read("search.css"), _read("search.js")
    if b"</" in css or b"</" in js:
        raise ValueError("search.css and search.js must not contain '</' (they are inlined)")
    page = _read("index.html").replace(b"__FACET_SETS__", embedded)
    return page.replace(b"__CSS__", css).replace(b"__JS__", js)


def endpoints() -> list[tuple[str, str, Handler, list[str]]]:
    """(path, metrics name, handler, methods) for the app to mount."""
    page = _Asset(_page(), "text/html; charset=utf-8")

    async def index(request: Request) -> Response:
        return page.response(request, "no-cache")

    return [("/", "page", index, ["GET"])]
