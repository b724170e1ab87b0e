"""esg-search's read API: `/esg-search/search` (Solr-style JSON and XML) and `/esg-search/wget`
(a download script). Errors are the servlet container's HTML pages, whose text clients grep."""

from __future__ import annotations

import time
from html import escape as html_escape
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from esgf_ha.index import wget
from esgf_ha.index.errors import BadRequest, PayloadTooLarge, SearchTimeout
from esgf_ha.index.params import SearchRequest, parse_search
from esgf_ha.index.render import JSON_TYPE, XML_TYPE, render_json, render_xml
from esgf_ha.index.search_errors import error_response
from esgf_ha.index.service import IndexService
from esgf_ha.index.settings import IndexSettings

FORM_LIMIT = 1024 * 1024


def html_error(status: int, message: str) -> Response:
    body = (
        f"<html><head><title>Error {status}</title></head><body><h1>HTTP Status {status}</h1>"
        f"<p>{html_escape(message, quote=False)}</p></body></html>"
    )
    return Response(body, status_code=status, media_type="text/html;charset=UTF-8")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _host(request: Request) -> str:
    host = request.headers.get("host")
    if host:
        return host
    server = request.scope.get("server") or ("localhost", 80)
    return f"{server[0]}:{server[1]}"


class Search:
    def __init__(self, service: IndexService, settings: IndexSettings) -> None:
        self.service = service
        self.settings = settings

    async def parse(self, request: Request, *, wget_mode: bool) -> SearchRequest:
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            body = await read_body(request, FORM_LIMIT)
            try:
                params += parse_qsl(
                    body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
                )
            except UnicodeDecodeError:
                raise BadRequest("the form body is not UTF-8 text") from None
        request.state.search_params = params
        return parse_search(params, self.service.known_fields(), wget=wget_mode)

    async def search(self, request: Request) -> Response:
        began = time.perf_counter()
        req = await self.parse(request, wget_mode=False)
        try:
            result, docs = await run_in_threadpool(
                self.service.search, req, self.settings.search_timeout
            )
        except SearchTimeout as exc:
            return error_response(req.format, exc)
        elapsed = time.perf_counter() - began
        qtime = int(elapsed * 1000)
        timing = {"Server-Timing": f"search;dur={elapsed * 1000:.3f}"}
        if req.format == "json":
            body = render_json(req, result, docs, _host(request), qtime)
            return Response(body, media_type=JSON_TYPE, headers=timing)
        body = render_xml(req, result, docs, _host(request), qtime)
        return Response(body, media_type=XML_TYPE, headers=timing)

    async def wget_script(self, request: Request) -> Response:
        if request.method == "GET" and not request.url.query:
            return RedirectResponse(
                str(request.url.include_query_params(limit=1, distrib="false")), 302
            )
        req = await self.parse(request, wget_mode=True)
        result, docs = await run_in_threadpool(
            self.service.search, req, self.settings.search_timeout
        )
        if result.total == 0:
            return PlainTextResponse("No files were found that matched the query")
        files, no_url = wget.files_for_script(docs, req.download_structure, req.download_emptypath)
        if not files:
            return PlainTextResponse(
                f"Files were found ({result.total}) but none can be downloaded: {no_url} had no "
                f"HTTPServer URL and {req.offset} were skipped by offset."
            )
        search_url = str(request.url)
        if request.method == "POST":
            # `-u` in the script asks again with GET: it needs the form's parameters
            search_url = str(request.url.replace(query=urlencode(request.state.search_params)))
        script = wget.render_script(
            files,
            host=request.url.hostname or "",
            search_url=search_url,
            total=result.total,
            limit=req.limit,
        )
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        return Response(
            script,
            media_type="text/x-sh",
            headers={"Content-Disposition": f"attachment; filename=wget-{stamp}.sh"},
        )
