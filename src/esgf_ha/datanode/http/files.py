"""THREDDS `fileServer`: whole files and ranges, with validators and checksums; a file this
node lacks is a redirect to a node that has it."""

from __future__ import annotations

import mimetypes
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from esgf_ha.datanode.errors import NotFound
from esgf_ha.datanode.files import (
    FileBody,
    FileStat,
    SendfileThreads,
    digest_headers,
    if_range_holds,
    not_modified,
    parse_range,
)
from esgf_ha.datanode.http.access import Access
from esgf_ha.datanode.http.operations import DataMetrics
from esgf_ha.datanode.paths import Located, split
from esgf_ha.datanode.service import DataNode

VISITED = "esgf_from"  # query parameter naming the nodes a redirected request has seen
MAX_HOPS = 16


def content_type(name: str) -> str:
    if name.endswith(".nc"):
        return "application/x-netcdf"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class FileServer:
    def __init__(self, node: DataNode, access: Access, metrics: DataMetrics) -> None:
        self.node = node
        self.settings = node.settings
        self.access = access
        self.sent = metrics.bytes.labels("fileServer")
        self.threads = SendfileThreads(self.settings.sendfile_threads)

    async def redirect_target(self, request: Request, loc: Located) -> str:
        # nodes already tried ride along in the query, so two nodes that both lack a file
        # answer 404 instead of sending the client back and forth
        tried = {h for h in request.query_params.get(VISITED, "").split(",")[:MAX_HOPS] if h}
        own = {h for h in (self.settings.data_node, request.headers.get("host")) if h}
        target = await self.node.elsewhere(loc, own | tried)
        sep = "&" if "?" in target else "?"
        return f"{target}{sep}{urlencode({VISITED: ','.join(sorted(own | tried))})}"

    async def serve(self, request: Request) -> Response:
        root, rel = split(request.path_params["path"])
        self.access.check(request, root)
        loc = self.node.locate(request.path_params["path"])
        if not rel or not loc.path.is_file():
            if loc.path.exists():
                raise NotFound("not a file")
            return RedirectResponse(await self.redirect_target(request, loc), status_code=307)
        try:
            stat = FileStat.of(loc.path)
        except OSError:
            raise NotFound("no such file") from None
        checksum, ctype = await self.node.checksum(rel, stat.size)
        headers = {
            "Accept-Ranges": "bytes",
            "Last-Modified": stat.last_modified,
            "ETag": stat.etag,
            "Content-Type": content_type(loc.path.name),
            **digest_headers(checksum, ctype),
        }
        if not_modified(request.headers, stat):
            return Response(status_code=304, headers=headers)
        if self.settings.accel_prefix is not None:
            return self.accel(loc, headers)
        return self.body(request, stat, headers)

    def accel(self, loc: Located, headers: dict[str, str]) -> Response:
        """nginx sends the bytes (ranges included); Content-Type/ETag come from it."""
        assert self.settings.accel_prefix is not None
        internal = f"{self.settings.accel_prefix.rstrip('/')}/{quote(loc.url_path)}"
        keep = {k: v for k, v in headers.items() if k in ("Digest", "Repr-Digest")}
        return Response(
            status_code=200,
            headers={"X-Accel-Redirect": internal, **keep},
            media_type=headers["Content-Type"],
        )

    def body(self, request: Request, stat: FileStat, headers: dict[str, str]) -> Response:
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
            sendfile_min=self.settings.sendfile_min_bytes,
            chunk=self.settings.chunk_bytes,
            threads=self.threads,
            on_sent=self.sent.inc,
        )
