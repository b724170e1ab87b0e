"""The HTTP edge every service shares: the JSON error body, the bearer challenge, the readiness
body, the request timing wrapper and the Prometheus metrics.

Each service maps its own error tree to statuses; what the client sees is decided here, once:

* errors: `{"ok": false, "status": <code>, "error": <message>}` (ESGF endpoints that must keep
  esg-search's HTML or XML bodies pass their own renderer to `measured`);
* 401/403: `WWW-Authenticate: Bearer realm="esgf-ha", scope=...` as RFC 6750 describes;
* `/readyz`: `{"ok", "ready", "status", "service", "version", "reason", "problems", ...}`, 200
  when ready and 503 otherwise, with the service's own fields beside the common ones;
* metrics: every name starts with `esgf_ha_`. The names used before that rule are still exported
  as deprecated aliases (`LEGACY_NAMES`) so dashboards keep working until they move.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from esgf_ha import __version__
from esgf_ha.common.auth import AuthError

log = logging.getLogger("esgf_ha.edge")
Handler = Callable[[Request], Awaitable[Response]]
ErrorRenderer = Callable[[int, str], Response]
# what a service knows how to turn into a response; None: not one of its errors
ErrorMapper = Callable[[Exception, ErrorRenderer], Response | None]

PREFIX = "esgf_ha_"
REALM = "esgf-ha"
PROMETHEUS_TYPE = "text/plain; version=0.0.4"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# new name -> the name it had before every metric took the esgf_ha_ prefix (docs list both)
LEGACY_NAMES = {
    "index": {
        "esgf_ha_http_requests": "esgf_http_requests",
        "esgf_ha_http_request_seconds": "esgf_http_request_seconds",
        "esgf_ha_index_records": "esgf_index_records",
        "esgf_ha_index_sequence": "esgf_index_sequence",
        "esgf_ha_replication_lag_seconds": "esgf_replication_lag_seconds",
        "esgf_ha_replication_applied_records": "esgf_replication_applied_records",
        "esgf_ha_replication_bootstraps": "esgf_replication_bootstraps",
    },
    "data": {
        "esgf_ha_http_requests": "esgf_data_requests",
        "esgf_ha_http_request_seconds": "esgf_data_request_seconds",
        "esgf_ha_data_bytes_sent": "esgf_data_bytes_sent",
    },
}


def error_body(status: int, message: str) -> dict[str, object]:
    return {"ok": False, "status": status, "error": message}


# what `error_body` writes, as the OpenAPI documents describe it
ERROR_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "status": {"type": "integer"},
        "error": {"type": "string"},
    },
    "required": ["ok", "status", "error"],
}


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def challenge(exc: AuthError, scope: str | None, presented: bool) -> str:
    """The `WWW-Authenticate` value for a refused request (RFC 6750 section 3)."""
    parts = [f'realm="{REALM}"']
    if exc.status == 403:
        parts.append('error="insufficient_scope"')
    elif presented:
        parts.append('error="invalid_token"')
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


# the common part of every /readyz body (JSON Schema), for the services' OpenAPI documents
READINESS_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "ready": {"type": "boolean"},
        "status": {"type": "integer", "enum": [200, 503]},
        "service": {"type": "string", "enum": ["index", "data", "dns"]},
        "version": {"type": "string"},
        "reason": {"type": "string", "nullable": True},  # OpenAPI 3.0 spelling
        "problems": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["ok", "ready", "status", "service", "version", "reason", "problems"],
}


def readiness_body(
    service: str, problems: Iterable[str] = (), **details: object
) -> tuple[dict[str, object], int]:
    """The one `/readyz` shape: the common fields, then the service's own. The first problem is
    the `reason` (None when ready), so a health checker can show one line."""
    found = [p for p in problems if p]
    ready = not found
    status = 200 if ready else 503
    body: dict[str, object] = {
        "ok": ready,
        "ready": ready,
        "status": status,
        "service": service,
        "version": __version__,
        "reason": found[0] if found else None,
        "problems": found,
        **details,
    }
    return body, status


def readiness(service: str, problems: Iterable[str] = (), **details: object) -> Response:
    body, status = readiness_body(service, problems, **details)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def not_ready_bytes(service: str, reason: str) -> bytes:
    return orjson.dumps(readiness_body(service, [reason])[0])


class _Renamed:
    """Re-exports chosen families of a registry under their old names."""

    def __init__(self, registry: CollectorRegistry, names: dict[str, str]) -> None:
        self.registry = registry
        self.names = names

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            old = self.names.get(family.name)
            if old is None:
                continue
            alias = Metric(old, f"deprecated: use {family.name}", family.type, family.unit)
            for s in family.samples:
                name = old + s.name[len(family.name) :]
                alias.add_sample(name, s.labels, s.value, s.timestamp, s.exemplar)
            yield alias


class Metrics:
    """One registry per app, holding the request counter and latency histogram every service
    has; services add their own gauges and counters with `PREFIX` names."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.legacy = CollectorRegistry()
        self.legacy.register(_Renamed(self.registry, LEGACY_NAMES.get(service, {})))
        self.requests = Counter(
            PREFIX + "http_requests",
            "HTTP requests served",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            PREFIX + "http_request_seconds",
            "time to the start of the response",
            ["endpoint"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(self.legacy)

    def response(self) -> Response:
        return Response(self.exposition(), media_type=PROMETHEUS_TYPE)


# nginx's status for a request whose client closed the connection before the answer
CLIENT_CLOSED = 499


def measured(
    endpoint: str,
    handler: Handler,
    metrics: Metrics,
    *,
    errors: ErrorRenderer = json_error,
    mapper: ErrorMapper | None = None,
    scope: str | None = None,
    after: Callable[[Response], None] | None = None,
) -> Handler:
    """`handler` timed and counted, its errors answered: the service's own through `mapper`,
    refused credentials with a challenge, anything else as a logged 500 without the trace."""

    async def wrapped(request: Request) -> Response:
        began = time.perf_counter()
        try:
            response = await handler(request)
        except AuthError as exc:
            response = errors(exc.status, str(exc))
            presented = bool(request.headers.get("authorization"))
            response.headers["WWW-Authenticate"] = challenge(exc, scope, presented)
        except ClientDisconnect:
            # the client left before its request body was in: nobody reads an answer, and it
            # is not the server's error (counted as 499, as nginx does)
            log.info("client disconnected", extra={"endpoint": endpoint})
            response = errors(CLIENT_CLOSED, "client closed the request")
        except Exception as exc:
            mapped = mapper(exc, errors) if mapper is not None else None
            if mapped is None:
                log.exception("unexpected error", extra={"endpoint": endpoint})
                mapped = errors(500, "internal error; the incident was logged")
            response = mapped
        metrics.latency.labels(endpoint).observe(time.perf_counter() - began)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if after is not None:
            after(response)
        return response

    return wrapped


async def no_route(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 (and malformed-request 400) in the common error body."""
    status = int(getattr(exc, "status_code", 404))
    if status == 404:
        return json_error(404, "no such endpoint")
    if status == 405:
        return json_error(405, "method not allowed")
    return json_error(status if status < 500 else 400, "bad request")


ROUTING_ERRORS: dict[Any, Any] = {400: no_route, 404: no_route, 405: no_route}
