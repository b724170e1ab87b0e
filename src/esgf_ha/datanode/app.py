"""The HTTP layer of the data node: routes to DataNode calls, errors to statuses.

Errors are one JSON body, `{"ok": false, "status": <code>, "error": <message>}`; 401 carries
`WWW-Authenticate: Bearer`, 416 carries `Content-Range: bytes */<size>`."""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from esgf_ha.common.auth import AuthError, TokenVerifier
from esgf_ha.datanode import catalog, catalog_html, opendap
from esgf_ha.datanode.errors import (
    DataNodeError,
    NotFound,
    RangeNotSatisfiable,
)
from esgf_ha.datanode.files import (
    FileBody,
    FileStat,
    SendfileThreads,
    digest_headers,
    if_range_holds,
    not_modified,
    parse_range,
)
from esgf_ha.datanode.paths import Located, catalog_path, split
from esgf_ha.datanode.service import DataNode

log = logging.getLogger("esgf_ha.datanode.http")
Handler = Callable[[Request], Awaitable[Response]]
# netCDF-C is not thread-safe: one OPeNDAP read at a time per process
_NETCDF_LOCK = threading.Lock()


class OpendapPieces:
    """A `.dods` answer being made: the open file and its pieces, each read under the netCDF
    lock in a worker thread, so a large answer is never whole in memory and a slow client
    holds neither the lock nor a thread between pieces."""

    def __init__(self, f: opendap.OpendapFile, pieces: Iterator[bytes]) -> None:
        self.file = f
        self.pieces = pieces

    def next(self) -> bytes | None:
        with _NETCDF_LOCK:
            return next(self.pieces, None)

    def close(self) -> None:
        with _NETCDF_LOCK:
            self.file.close()


def opendap_pieces(path: Path, query: str, max_bytes: int) -> OpendapPieces:
    """Open, parse the projection and check the size (errors before any byte is sent)."""
    with _NETCDF_LOCK:
        f = opendap.OpendapFile(path, path.name)
        try:
            projections = opendap.parse_constraint(query, f.variables)
            return OpendapPieces(f, f.dods_chunks(projections, max_bytes))
        except BaseException:
            f.close()
            raise


async def _counted(pieces: OpendapPieces, metrics: Metrics) -> AsyncIterator[bytes]:
    try:
        while (piece := await anyio.to_thread.run_sync(pieces.next)) is not None:
            metrics.bytes.labels("dodsC").inc(len(piece))
            yield piece
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(pieces.close)


VISITED = "esgf_from"  # query parameter naming the nodes a redirected request has seen
MAX_HOPS = 16


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "esgf_data_requests",
            "HTTP requests served",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "esgf_data_bytes_sent",
            "file and OPeNDAP body bytes sent",
            ["endpoint"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "esgf_data_request_seconds",
            "time to the start of the response",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"ok": False, "status": status, "error": message}, status_code=status, headers=headers
    )


def _own_hosts(node: DataNode, request: Request) -> set[str]:
    hosts = {h for h in (node.settings.data_node, request.headers.get("host")) if h}
    return hosts


def _content_type(name: str) -> str:
    if name.endswith(".nc"):
        return "application/x-netcdf"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def create_app(node: DataNode, verifier: TokenVerifier | None) -> Starlette:
    metrics = Metrics()
    settings = node.settings
    threads = SendfileThreads(settings.sendfile_threads)

    def authorize(request: Request, root: str) -> None:
        if root not in node.restricted:
            return
        if verifier is None:  # settings refuse this; kept as a safe default
            raise AuthError("no token verifier configured")
        verifier.verify(request.headers.get("authorization"), "esgf:download")

    def measured(endpoint: str, handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            began = time.perf_counter()
            try:
                response = await handler(request)
            except RangeNotSatisfiable as exc:
                response = _error(416, exc.message, {"Content-Range": f"bytes */{exc.size}"})
            except DataNodeError as exc:
                response = _error(exc.status, exc.message)
            except AuthError as exc:
                if exc.status == 401:
                    challenge = 'Bearer realm="esgf-data", scope="esgf:download"'
                    if request.headers.get("authorization"):
                        challenge += ', error="invalid_token"'
                else:
                    challenge = (
                        'Bearer realm="esgf-data", error="insufficient_scope", '
                        'scope="esgf:download"'
                    )
                response = _error(exc.status, str(exc), {"WWW-Authenticate": challenge})
            except Exception:
                # not the client's fault (an unreadable file, a bug): logged with the trace,
                # answered without it
                log.exception("unexpected error", extra={"endpoint": endpoint})
                response = _error(500, "internal error; see the data node's log")
            metrics.latency.labels(endpoint).observe(time.perf_counter() - began)
            metrics.requests.labels(endpoint, str(response.status_code)).inc()
            return response

        return wrapped

    def count_bytes(endpoint: str) -> Callable[[int], None]:
        counter = metrics.bytes.labels(endpoint)
        return lambda n: counter.inc(n)

    async def redirect_target(request: Request, loc: Located) -> str:
        # nodes already tried ride along in the query, so two nodes that both lack a file
        # answer 404 instead of sending the client back and forth
        tried = {h for h in request.query_params.get(VISITED, "").split(",")[:MAX_HOPS] if h}
        own = _own_hosts(node, request)
        target = await node.elsewhere(loc, own | tried)
        sep = "&" if "?" in target else "?"
        return f"{target}{sep}{urlencode({VISITED: ','.join(sorted(own | tried))})}"

    async def file_server(request: Request) -> Response:
        root, rel = split(request.path_params["path"])
        authorize(request, root)
        loc = node.locate(request.path_params["path"])
        if not rel or not loc.path.is_file():
            if loc.path.exists():
                raise NotFound("not a file")
            return RedirectResponse(await redirect_target(request, loc), status_code=307)
        try:
            stat = FileStat.of(loc.path)
        except OSError:
            raise NotFound("no such file") from None
        checksum, ctype = await node.checksum(rel, stat.size)
        headers = {
            "Accept-Ranges": "bytes",
            "Last-Modified": stat.last_modified,
            "ETag": stat.etag,
            "Content-Type": _content_type(loc.path.name),
            **digest_headers(checksum, ctype),
        }
        if not_modified(request.headers, stat):
            return Response(status_code=304, headers=headers)
        if settings.accel_prefix is not None:
            # nginx sends the bytes (ranges included); Content-Type/ETag come from it
            internal = f"{settings.accel_prefix.rstrip('/')}/{quote(loc.url_path)}"
            keep = {k: v for k, v in headers.items() if k in ("Digest", "Repr-Digest")}
            return Response(
                status_code=200,
                headers={"X-Accel-Redirect": internal, **keep},
                media_type=headers["Content-Type"],
            )
        span = None
        if if_range_holds(request.headers, stat):
            span = parse_range(request.headers.get("range"), stat.size)
        if span is None:
            start, length, status = 0, stat.size, 200
        else:
            start, length, status = span[0], span[1] - span[0] + 1, 206
            headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{stat.size}"
        return FileBody(
            stat,
            start,
            length,
            status_code=status,
            headers=headers,
            send_body=request.method != "HEAD",
            sendfile_min=settings.sendfile_min_bytes,
            chunk=settings.chunk_bytes,
            threads=threads,
            on_sent=count_bytes("fileServer"),
        )

    async def top_catalog(request: Request) -> Response:
        body = catalog.top_catalog(node.roots, node.index is not None)
        return Response(body, media_type=catalog.XML_TYPE)

    async def catalogs(request: Request) -> Response:
        path: str = request.path_params["path"]
        if path.endswith(".html"):
            return await catalog_view(request, path.removesuffix(".html") + ".xml")
        if path == "esgcet/catalog.xml":
            return await master_catalog(request)
        if path.startswith("esgcet/") and path.endswith(".xml"):
            return await dataset_catalog(path, request.query_params.get("dataset"))
        if path == "catalog.xml":
            return await top_catalog(request)
        return await directory_catalog(path)

    async def directory_catalog(path: str) -> Response:
        if not path.endswith("/catalog.xml"):
            raise NotFound("catalogs end with catalog.xml or <instance_id>.xml")
        dir_path = path.removesuffix("/catalog.xml")
        root, rel = split(dir_path)
        loc = node.locate(dir_path)
        if not loc.path.is_dir():
            raise NotFound("no such directory")
        body = await anyio.to_thread.run_sync(
            catalog.directory_catalog,
            root,
            rel,
            loc.path,
            node.roots[root],
            root in node.restricted,
        )
        return Response(body, media_type=catalog.XML_TYPE)

    async def catalog_view(request: Request, xml_path: str) -> Response:
        """`catalog.html` (and `<instance_id>.html`): the HTML view of the XML catalog."""
        only = request.query_params.get("dataset")
        if xml_path == "esgcet/catalog.xml":
            if only is not None:
                raise NotFound("the master catalog lists catalogs, not datasets")
            return await master_view(request)
        if xml_path.startswith("esgcet/"):
            source = await dataset_catalog(xml_path, None)
        elif xml_path == "catalog.xml":
            source = await top_catalog(request)
        else:
            source = await directory_catalog(xml_path)
        xml = bytes(source.body)
        if only is None:
            body = await anyio.to_thread.run_sync(catalog_html.catalog_page, xml)
        else:
            page = await anyio.to_thread.run_sync(catalog_html.dataset_page, xml, only)
            if page is None:
                raise NotFound(f"no dataset {only[:200]!r} in this catalog")
            body = page
        return Response(body, media_type=catalog_html.HTML_TYPE)

    async def top_view(request: Request) -> Response:
        return await catalog_view(request, "catalog.xml")

    async def master_view(request: Request) -> Response:
        if node.index is None:
            raise NotFound("this data node has no index to list datasets from")
        pages = node.index.dataset_ids(settings.data_node or request.headers.get("host"))
        first: list[str] = await anext(pages, [])

        async def body() -> AsyncIterator[str]:
            yield catalog_html.master_head()
            yield catalog_html.master_rows(first)
            async for page in pages:
                yield catalog_html.master_rows(page)
            yield catalog_html.master_tail()

        return StreamingResponse(body(), media_type=catalog_html.HTML_TYPE)

    async def master_catalog(request: Request) -> Response:
        if node.index is None:
            raise NotFound("this data node has no index to list datasets from")
        own = settings.data_node or request.headers.get("host")
        pages = node.index.dataset_ids(own)
        first: list[str] = await anext(pages, [])  # fail with 503 before the status goes out

        async def body() -> AsyncIterator[str]:
            yield catalog.master_head()
            yield catalog.master_refs(first)
            async for page in pages:
                yield catalog.master_refs(page)
            yield catalog.master_tail()

        return StreamingResponse(body(), media_type=catalog.XML_TYPE)

    async def dataset_catalog(path: str, only: str | None) -> Response:
        if node.index is None:
            raise NotFound("this data node has no index to build dataset catalogs from")
        instance = path.rsplit("/", 1)[1].removesuffix(".xml")
        if len(path) > 4096 or catalog_path(instance) != path:
            raise NotFound("dataset catalogs live at esgcet/<master_id as dirs>/<instance_id>.xml")
        dataset = await node.index.dataset(instance, settings.data_node)
        if dataset is None:
            raise NotFound(f"no dataset {instance} in the index")
        files = await node.index.files_of(str(dataset["id"]))
        restricted = any(
            str(catalog.first(f.get("publish_path")) or "").split("/", 1)[0] in node.restricted
            for f in files
        )
        if only and only != instance:
            leaf = [f for f in files if f.get("instance_id") == only]
            if not leaf:
                raise NotFound(f"no dataset {only[:200]!r} in this catalog")
            return Response(catalog.file_catalog(leaf[0], restricted), media_type=catalog.XML_TYPE)
        body = catalog.dataset_catalog(dataset, files, restricted)
        return Response(body, media_type=catalog.XML_TYPE)

    async def dods(request: Request) -> Response:
        base, suffix = opendap.split_suffix(request.path_params["path"])
        root, rel = split(base)
        authorize(request, root)
        loc = node.locate(base)
        if not rel or not loc.path.is_file():
            raise NotFound("no such file")
        if suffix == ".ver":
            return PlainTextResponse("Core version: DAP/2.0\nServer version: esgf-ha\n")
        query = request.url.query
        max_bytes = settings.opendap_max_bytes

        def answer() -> tuple[bytes, str]:
            with _NETCDF_LOCK, opendap.OpendapFile(loc.path, loc.path.name) as f:
                if suffix == ".dds":
                    projections = opendap.parse_constraint(query, f.variables) if query else None
                    return f.dds(projections).encode(), "text/plain; charset=utf-8"
                if suffix == ".das":
                    return f.das().encode(), "text/plain; charset=utf-8"
                if suffix == ".html":
                    url = str(request.url.replace(query="")).removesuffix(".html")
                    return opendap.html_page(f, url).encode(), "text/html; charset=utf-8"
                raise NotFound("OPeNDAP URLs end with .dds, .das, .dods or .html")

        headers = {"XDODS-Server": "dods/2.0", "XDAP": "2.0"}
        if suffix == ".dods":
            headers["Content-Description"] = "dods-data"
            pieces = await anyio.to_thread.run_sync(opendap_pieces, loc.path, query, max_bytes)
            return StreamingResponse(
                _counted(pieces, metrics), media_type="application/octet-stream", headers=headers
            )
        body, media = await anyio.to_thread.run_sync(answer)
        metrics.bytes.labels("dodsC").inc(len(body))
        if suffix in (".dds", ".das"):
            headers["Content-Description"] = f"dods-{suffix[1:]}"
        return Response(body, media_type=media, headers=headers)

    async def livez(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        problems = await anyio.to_thread.run_sync(node.not_ready)
        if problems:
            return JSONResponse({"ok": False, "status": 503, "problems": problems}, 503)
        return JSONResponse({"ok": True, **node.describe()})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "no such endpoint")

    async def bad_method(request: Request, exc: Exception) -> Response:
        status = int(getattr(exc, "status_code", 500))
        if status == 405:
            return _error(405, "method not allowed")
        if status == 404:
            return _error(404, "no such endpoint")
        return _error(status if status < 500 else 400, "bad request")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await node.close()

    get_head = ["GET", "HEAD"]
    routes = [
        Route(
            "/thredds/fileServer/{path:path}", measured("fileServer", file_server), methods=get_head
        ),
        Route("/thredds/catalog/catalog.xml", measured("catalog", top_catalog), methods=get_head),
        Route("/thredds/catalog/catalog.html", measured("catalog", top_view), methods=get_head),
        Route("/thredds/catalog/{path:path}", measured("catalog", catalogs), methods=get_head),
        Route("/thredds/dodsC/{path:path}", measured("dodsC", dods), methods=get_head),
        Route("/livez", livez, methods=get_head),
        Route("/readyz", readyz, methods=get_head),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {404: not_found, 405: bad_method, 400: bad_method}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
