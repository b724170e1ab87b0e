"""The HTTP layer of the index node: routes to IndexService calls, errors to statuses.

It does no storage itself. ESGF endpoints keep esg-search's shapes (Solr JSON/XML, HTML error
pages whose text clients grep, XML status documents for `/ws/*`); our own `/api/v1` endpoints
speak the common JSON error body of `common.edge`. The handlers live in `index.http`, one
module per concern; this module only wires them to paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from esgf_ha.common.auth import TokenVerifier
from esgf_ha.common.edge import ROUTING_ERRORS, Handler, Metrics, json_error, measured
from esgf_ha.index import web
from esgf_ha.index.changes import ChangeFeed
from esgf_ha.index.errors import IndexServiceError, SearchTimeout
from esgf_ha.index.follower import AnyFollower
from esgf_ha.index.http.operations import Operations, index_metrics
from esgf_ha.index.http.publication import Publication
from esgf_ha.index.http.replication import Replication
from esgf_ha.index.http.search import Search, html_error
from esgf_ha.index.http.writes import WriteGate
from esgf_ha.index.http.ws import LegacyPublication, ws_error
from esgf_ha.index.service import IndexService
from esgf_ha.index.settings import IndexSettings
from esgf_ha.index.stac import routes as stac_routes

ErrorRenderer = Callable[[int, str], Response]
PUBLISH, REPLICATE = "esgf:publish", "esgf:replicate"


def index_errors(exc: Exception, errors: ErrorRenderer) -> Response | None:
    """The index's error tree, in whichever body the endpoint speaks."""
    if not isinstance(exc, IndexServiceError):
        return None
    response = errors(exc.status, exc.message)
    if isinstance(exc, SearchTimeout):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


class Routes:
    """Collects the routes, each wrapped by the common edge with the index's freshness
    headers, so a client can tell how current every answer is."""

    def __init__(self, service: IndexService, metrics: Metrics, lag: Callable[[], float]):
        self.service = service
        self.metrics = metrics
        self.lag = lag
        self.routes: list[Route] = []

    def freshness(self, response: Response) -> None:
        response.headers["X-ESGF-Index-Sequence"] = str(self.service.seq)
        response.headers["X-ESGF-Replication-Lag"] = f"{self.lag():.3f}"
        if self.service.worker is not None:
            # which worker process answered (`--workers`): its number and process id
            response.headers["X-ESGF-Worker"] = f"{self.service.worker}:{os.getpid()}"

    def add(
        self,
        path: str,
        endpoint: str,
        handler: Handler,
        methods: list[str],
        errors: ErrorRenderer = json_error,
        *,
        slash: bool = False,
        scope: str | None = None,
    ) -> None:
        wrapped = measured(
            endpoint,
            handler,
            self.metrics,
            errors=errors,
            mapper=index_errors,
            scope=scope,
            after=self.freshness,
        )
        self.routes.append(Route(path, wrapped, methods=methods))
        if slash:
            self.routes.append(Route(path + "/", wrapped, methods=methods))


def _esg_search(r: Routes, search: Search, ws: LegacyPublication) -> None:
    H, X, get, post = html_error, ws_error, ["GET"], ["POST"]
    r.add("/esg-search/search", "search", search.search, get, H, slash=True)
    r.add("/esg-search/wget", "wget", search.wget_script, ["GET", "POST"], H, slash=True)
    r.add("/esg-search/ws/ping", "ws_ping", ws.ping, get, X, slash=True)
    for name, handler in (
        ("publish", ws.publish),
        ("unpublish", ws.unpublish),
        ("update", ws.update),
        ("retract", ws.retract),
        ("delete", ws.delete),
    ):
        r.add(f"/esg-search/ws/{name}", f"ws_{name}", handler, post, X, slash=True, scope=PUBLISH)


def _api(r: Routes, publication: Publication, feed: Replication, ops: Operations) -> None:
    get, post = ["GET"], ["POST"]
    r.add("/api/v1/publish", "api_publish", publication.publish, post, scope=PUBLISH)
    r.add("/api/v1/retract", "api_retract", publication.retract, post, scope=PUBLISH)
    r.add("/api/v1/delete", "api_delete", publication.delete, post, scope=PUBLISH)
    r.add("/api/v1/status", "api_status", ops.status, get)
    r.add("/api/v1/changes", "api_changes", feed.changes, get, scope=REPLICATE)
    r.add("/api/v1/snapshot", "api_snapshot", feed.snapshot, get, scope=REPLICATE)
    r.add("/api/v1/digest", "api_digest", feed.digest, post, scope=REPLICATE)
    r.add("/api/v1/replication", "replication", feed.status, get, scope=REPLICATE)
    r.add("/api/v1/replication/pause", "replication_pause", feed.pause, post, scope=REPLICATE)
    r.add("/api/v1/replication/resume", "replication_resume", feed.resume, post, scope=REPLICATE)
    r.add("/livez", "livez", ops.livez, get)
    r.add("/readyz", "readyz", ops.readyz, get)
    r.add("/metrics", "metrics", ops.prometheus, get)
    r.add("/openapi.json", "openapi", ops.openapi_doc, get)


def create_app(
    settings: IndexSettings,
    service: IndexService,
    verifier: TokenVerifier,
    follower: AnyFollower | None = None,
) -> Starlette:
    metrics = index_metrics(service, follower)
    feed = ChangeFeed()
    service.listeners.append(feed.notify)
    gate = WriteGate(settings, verifier)
    ops = Operations(service, settings, follower, metrics)
    routes = Routes(service, metrics, ops.lag)
    _esg_search(routes, Search(service, settings), LegacyPublication(service, gate))
    replication = Replication(service, settings, verifier, gate, follower, feed)
    _api(routes, Publication(service, gate), replication, ops)
    for path, name, handler, methods in stac_routes.endpoints(service, settings.search_timeout):
        routes.add(path, name, handler, methods, stac_routes.error_response)
    for path, name, handler, methods in web.endpoints():
        routes.add(path, name, handler, methods)
    app = Starlette(routes=routes.routes, exception_handlers=ROUTING_ERRORS)
    app.state.service = service
    app.state.exit_hooks = [feed.close]
    return app
