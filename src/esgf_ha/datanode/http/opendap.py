"""OPeNDAP (`dodsC`): `.dds`, `.das`, `.html` and `.ver` answered whole; `.dods` streamed in
pieces, each read under the netCDF lock in a worker thread."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from esgf_ha.datanode import opendap
from esgf_ha.datanode.errors import NotFound
from esgf_ha.datanode.http.access import Access
from esgf_ha.datanode.http.operations import DataMetrics
from esgf_ha.datanode.paths import split
from esgf_ha.datanode.service import DataNode

# netCDF-C is not thread-safe: one OPeNDAP read at a time per process
_NETCDF_LOCK = threading.Lock()
TEXT = "text/plain; charset=utf-8"


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


async def _counted(pieces: OpendapPieces, sent: Counter) -> AsyncIterator[bytes]:
    try:
        while (piece := await anyio.to_thread.run_sync(pieces.next)) is not None:
            sent.inc(len(piece))
            yield piece
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(pieces.close)


def describe(path: Path, suffix: str, query: str, url: str) -> tuple[bytes, str]:
    """A whole, small answer: the structure, the attributes or the HTML form."""
    with _NETCDF_LOCK, opendap.OpendapFile(path, path.name) as f:
        if suffix == ".dds":
            projections = opendap.parse_constraint(query, f.variables) if query else None
            return f.dds(projections).encode(), TEXT
        if suffix == ".das":
            return f.das().encode(), TEXT
        if suffix == ".html":
            return opendap.html_page(f, url).encode(), "text/html; charset=utf-8"
        raise NotFound("OPeNDAP URLs end with .dds, .das, .dods or .html")


class Opendap:
    def __init__(self, node: DataNode, access: Access, metrics: DataMetrics) -> None:
        self.node = node
        self.access = access
        self.sent = metrics.bytes.labels("dodsC")

    async def serve(self, request: Request) -> Response:
        base, suffix = opendap.split_suffix(request.path_params["path"])
        root, rel = split(base)
        self.access.check(request, root)
        loc = self.node.locate(base)
        if not rel or not loc.path.is_file():
            raise NotFound("no such file")
        if suffix == ".ver":
            return PlainTextResponse("Core version: DAP/2.0\nServer version: esgf-ha\n")
        query = request.url.query
        headers = {"XDODS-Server": "dods/2.0", "XDAP": "2.0"}
        if suffix == ".dods":
            headers["Content-Description"] = "dods-data"
            max_bytes = self.node.settings.opendap_max_bytes
            pieces = await anyio.to_thread.run_sync(opendap_pieces, loc.path, query, max_bytes)
            return StreamingResponse(
                _counted(pieces, self.sent), media_type="application/octet-stream", headers=headers
            )
        url = str(request.url.replace(query="")).removesuffix(".html")
        body, media = await anyio.to_thread.run_sync(describe, loc.path, suffix, query, url)
        self.sent.inc(len(body))
        if suffix in (".dds", ".das"):
            headers["Content-Description"] = f"dods-{suffix[1:]}"
        return Response(body, media_type=media, headers=headers)
