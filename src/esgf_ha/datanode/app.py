"""The HTTP layer of the data node: routes to DataNode calls, errors to statuses.

Errors are the common JSON body of `common.edge`; 401/403 carry `WWW-Authenticate: Bearer` with
the `esgf:download` scope, 416 carries `Content-Range: bytes */<size>`. The handlers live in
`datanode.http`, one module per concern; this module only wires them to paths."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from esgf_ha.common.auth import TokenVerifier
from esgf_ha.common.edge import ROUTING_ERRORS, Handler, measured
from esgf_ha.datanode.errors import DataNodeError, RangeNotSatisfiable
from esgf_ha.datanode.http.access import SCOPE, Access
from esgf_ha.datanode.http.catalogs import Catalogs
from esgf_ha.datanode.http.files import FileServer
from esgf_ha.datanode.http.opendap import Opendap
from esgf_ha.datanode.http.operations import DataMetrics, Operations
from esgf_ha.datanode.service import DataNode


def data_errors(exc: Exception, errors: Callable[[int, str], Response]) -> Response | None:
    """The data node's error tree as statuses; a range past the end says the size."""
    if not isinstance(exc, DataNodeError):
        return None
    response = errors(exc.status, exc.message)
    if isinstance(exc, RangeNotSatisfiable):
        response.headers["Content-Range"] = f"bytes */{exc.size}"
    return response


def create_app(node: DataNode, verifier: TokenVerifier | None) -> Starlette:
    metrics = DataMetrics()
    access = Access(node, verifier)
    files = FileServer(node, access, metrics)
    catalogs = Catalogs(node)
    dods = Opendap(node, access, metrics)
    ops = Operations(node, metrics)

    def timed(endpoint: str, handler: Handler) -> Handler:
        return measured(endpoint, handler, metrics, mapper=data_errors, scope=SCOPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await node.close()

    get_head = ["GET", "HEAD"]
    routes = [
        Route(
            "/thredds/fileServer/{path:path}", timed("fileServer", files.serve), methods=get_head
        ),
        Route("/thredds/catalog/catalog.xml", timed("catalog", catalogs.top), methods=get_head),
        Route(
            "/thredds/catalog/catalog.html", timed("catalog", catalogs.top_view), methods=get_head
        ),
        Route("/thredds/catalog/{path:path}", timed("catalog", catalogs.any), methods=get_head),
        Route("/thredds/dodsC/{path:path}", timed("dodsC", dods.serve), methods=get_head),
        Route("/livez", timed("livez", ops.livez), methods=get_head),
        Route("/readyz", timed("readyz", ops.readyz), methods=get_head),
        Route("/metrics", timed("metrics", ops.prometheus), methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers=ROUTING_ERRORS, lifespan=lifespan)
