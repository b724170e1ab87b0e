"""The HTTP layer of the index node: routes to IndexService calls, errors to statuses.

It does no storage itself. ESGF endpoints keep esg-search's shapes (Solr JSON/XML, HTML error
pages whose text clients grep, XML status documents for `/ws/*`); our own `/api/v1` endpoints
speak JSON with one error body: `{"ok": false, "status": <code>, "error": <message>}`.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from html import escape as html_escape
from urllib.parse import parse_qsl, urlencode

import orjson
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from esgf_ha import __version__
from esgf_ha.common.auth import AuthError, Principal, TokenVerifier
from esgf_ha.index import openapi, web, wget, ws_xml
from esgf_ha.index.binding import Binding
from esgf_ha.index.bootstrap import SEQ_HEADER, make_snapshot
from esgf_ha.index.changes import MAX_LIMIT, MAX_WAIT, ChangeFeed, ChangesQuery, encode_changes
from esgf_ha.index.errors import (
    BadRequest,
    Forbidden,
    IndexServiceError,
    PayloadTooLarge,
    SearchTimeout,
)
from esgf_ha.index.follower import Follower
from esgf_ha.index.limits import WriteLimits, read_capped
from esgf_ha.index.params import SearchRequest, parse_search
from esgf_ha.index.publish import Outcome
from esgf_ha.index.render import JSON_TYPE, XML_TYPE, render_json, render_xml
from esgf_ha.index.search_errors import error_response
from esgf_ha.index.service import IndexService
from esgf_ha.index.settings import IndexSettings
from esgf_ha.index.stac import routes as stac_routes

log = logging.getLogger("esgf_ha.index.http")
Handler = Callable[[Request], Awaitable[Response]]


class Metrics:
    def __init__(self, service: IndexService, follower: Follower | None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "esgf_http_requests",
            "HTTP requests served",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "esgf_http_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        records = Gauge(
            "esgf_index_records", "records in the index", ["type"], registry=self.registry
        )
        for core in ("Dataset", "File", "Aggregation"):
            records.labels(core).set_function(_counter(service, core))
        seq = Gauge("esgf_index_sequence", "last change-log sequence", registry=self.registry)
        seq.set_function(lambda: service.seq)
        lag = Gauge(
            "esgf_replication_lag_seconds",
            "how stale this index may be (0 on the master)",
            registry=self.registry,
        )
        lag.set_function(lambda: follower.lag() if follower else 0.0)
        if follower is not None:
            applied = Gauge(
                "esgf_replication_applied_records",
                "records applied from the upstream change log since start",
                registry=self.registry,
            )
            applied.set_function(lambda: follower.applied_records)
            boots = Gauge(
                "esgf_replication_bootstraps",
                "snapshot bootstraps since start",
                registry=self.registry,
            )
            boots.set_function(lambda: follower.bootstraps)


DigestRange = tuple[str, str | None, bool]


def _digest_request(
    body: object,
) -> tuple[str, list[DigestRange] | None, tuple[str, str | None, int] | None]:
    """Validate a digest request: {"core", "ranges": [[lo, hi|null, list?], ...]} or
    {"core", "split": [lo, hi|null, parts]}."""
    if not isinstance(body, dict) or body.get("core") not in ("Dataset", "File", "Aggregation"):
        raise BadRequest('expected {"core": "Dataset"|"File"|"Aggregation", ...}')

    def bound(value: object, name: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        raise BadRequest(f"{name} must be a string or null")

    split = body.get("split")
    if split is not None:
        if not isinstance(split, list) or len(split) != 3 or not isinstance(split[2], int):
            raise BadRequest("split must be [lo, hi|null, parts]")
        if not 2 <= split[2] <= 256:
            raise BadRequest("parts must be between 2 and 256")
        return body["core"], None, (bound(split[0], "lo") or "", bound(split[1], "hi"), split[2])
    ranges = body.get("ranges")
    if not isinstance(ranges, list) or not ranges or len(ranges) > 256:
        raise BadRequest("ranges must be a list of 1 to 256 [lo, hi|null, list?] items")
    out: list[DigestRange] = []
    for item in ranges:
        if not isinstance(item, list) or len(item) not in (2, 3):
            raise BadRequest("each range must be [lo, hi|null] or [lo, hi|null, true]")
        out.append((bound(item[0], "lo") or "", bound(item[1], "hi"), bool(item[2:] and item[2])))
    return body["core"], out, None


def _counter(service: IndexService, core: str) -> Callable[[], float]:
    return lambda: float(service.cores[core].live_count)


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


def _html_error(status: int, message: str) -> Response:
    # esg-search answers with the servlet container's HTML error page; clients grep its text
    body = (
        f"<html><head><title>Error {status}</title></head><body><h1>HTTP Status {status}</h1>"
        f"<p>{html_escape(message, quote=False)}</p></body></html>"
    )
    return Response(body, status_code=status, media_type="text/html;charset=UTF-8")


def _json_error(status: int, message: str) -> Response:
    return JSONResponse({"ok": False, "status": status, "error": message}, status_code=status)


def create_app(
    settings: IndexSettings,
    service: IndexService,
    verifier: TokenVerifier,
    follower: Follower | None = None,
) -> Starlette:
    metrics = Metrics(service, follower)
    feed = ChangeFeed()
    service.listeners.append(feed.notify)

    def lag() -> float:
        return follower.lag() if follower is not None else 0.0

    def measured(
        endpoint: str, handler: Handler, errors: Callable[[int, str], Response]
    ) -> Handler:
        async def wrapped(request: Request) -> Response:
            began = time.perf_counter()
            try:
                response = await handler(request)
            except IndexServiceError as exc:
                response = errors(exc.status, exc.message)
                if isinstance(exc, SearchTimeout):
                    response.headers["Retry-After"] = str(exc.retry_after)
            except AuthError as exc:
                response = errors(exc.status, str(exc))
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="esgf-ha"'
            except Exception:
                log.exception("unexpected error", extra={"endpoint": endpoint})
                response = errors(500, "internal error; the incident was logged")
            elapsed = time.perf_counter() - began
            metrics.requests.labels(endpoint, str(response.status_code)).inc()
            metrics.latency.labels(endpoint).observe(elapsed)
            response.headers["X-ESGF-Index-Sequence"] = str(service.seq)
            response.headers["X-ESGF-Replication-Lag"] = f"{lag():.3f}"
            return response

        return wrapped

    trusted = [ipaddress.ip_network(n, strict=False) for n in settings.ws_anonymous_from]
    limits = WriteLimits(
        settings.max_body_bytes,
        settings.max_ws_body_bytes,
        settings.max_batch_records,
        settings.max_record_fields,
        settings.max_field_values,
        settings.max_value_chars,
    )

    async def write_body(request: Request, *, ws: bool = False) -> bytes:
        limit, setting = (
            (limits.max_ws_body_bytes, "max_ws_body_bytes")
            if ws
            else (limits.max_body_bytes, "max_body_bytes")
        )
        return await read_capped(
            request.stream(), request.headers.get("content-length"), limit, setting
        )

    def writer(request: Request, *, legacy: bool = False) -> Binding | None:
        """Authorise a publication write; the records it may touch (None: any)."""
        return Binding.of(authorize(request, "esgf:publish", legacy=legacy))

    def authorize(request: Request, scope: str, *, legacy: bool = False) -> Principal:
        if settings.role != "master":
            raise Forbidden(
                "this index is a read-only replica (it follows "
                f"{settings.upstream or 'an upstream index'}); publish to the master"
            )
        if legacy and trusted and not request.headers.get("authorization"):
            peer = request.client.host if request.client else ""
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                address = None
            if address is not None and any(address in net for net in trusted):
                return Principal(f"trusted-network:{peer}", frozenset({scope}), "network")
        cert = getattr(request.state, "tls_client_cert", None)
        if cert and not request.headers.get("authorization"):
            subject = x509.load_der_x509_certificate(cert).subject.rfc4514_string()
            return Principal(subject, frozenset({"esgf:publish"}), "certificate")
        return verifier.verify(request.headers.get("authorization"), scope)

    async def search_request(request: Request, *, wget_mode: bool) -> SearchRequest:
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            body = await read_body(request, 1024 * 1024)
            try:
                params += parse_qsl(
                    body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
                )
            except UnicodeDecodeError:
                raise BadRequest("the form body is not UTF-8 text") from None
        request.state.search_params = params
        return parse_search(params, service.known_fields(), wget=wget_mode)

    async def search(request: Request) -> Response:
        began = time.perf_counter()
        req = await search_request(request, wget_mode=False)
        try:
            result, docs = await run_in_threadpool(service.search, req, settings.search_timeout)
        except SearchTimeout as exc:
            return error_response(req.format, exc)
        elapsed = time.perf_counter() - began
        qtime = int(elapsed * 1000)
        timing = {"Server-Timing": f"search;dur={elapsed * 1000:.3f}"}
        if req.format == "json":
            body = render_json(req, result, docs, _host(request), qtime)
            return Response(body, media_type=JSON_TYPE, headers=timing)
        return Response(
            render_xml(req, result, docs, _host(request), qtime),
            media_type=XML_TYPE,
            headers=timing,
        )

    async def wget_script(request: Request) -> Response:
        if request.method == "GET" and not request.url.query:
            return RedirectResponse(
                str(request.url.include_query_params(limit=1, distrib="false")), 302
            )
        req = await search_request(request, wget_mode=True)
        result, docs = await run_in_threadpool(service.search, req, settings.search_timeout)
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

    async def ws_ping(request: Request) -> Response:
        return PlainTextResponse("ESGF REST Publishing Service")

    def ws_response(outcome_messages: list[str]) -> Response:
        return Response(
            ws_xml.status_document(True, outcome_messages), media_type="application/xml"
        )

    def ws_error(status: int, message: str) -> Response:
        return Response(
            ws_xml.status_document(False, [message]),
            status_code=status,
            media_type="application/xml",
        )

    async def ws_publish(request: Request) -> Response:
        binding = writer(request, legacy=True)
        record = ws_xml.parse_record(await write_body(request, ws=True))
        limits.check_record(record, "record")
        outcome = await run_in_threadpool(service.publish_record, record, binding)
        return ws_response(outcome.messages)

    async def ws_unpublish(request: Request) -> Response:
        binding = writer(request, legacy=True)
        record = ws_xml.parse_record(await write_body(request, ws=True))
        if "id" not in record:
            raise BadRequest("the document lacks an id field")
        outcome = await run_in_threadpool(service.delete, [str(record["id"])], binding)
        return ws_response([f"Unpublished record: {i}" for i in outcome.deleted])

    async def ws_update(request: Request) -> Response:
        binding = writer(request, legacy=True)
        core, action, updates = ws_xml.parse_updates(await write_body(request, ws=True))
        limits.check_updates(updates)  # type: ignore[arg-type]
        outcome = await run_in_threadpool(service.update, core, action, updates, binding)
        return ws_response(outcome.messages)

    async def form_ids(request: Request) -> list[str]:
        body = await write_body(request, ws=True)
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=False)
        pairs += list(request.query_params.multi_items())
        ids = [v for k, v in pairs if k == "id"]
        if not ids:
            raise BadRequest("no id given: send form field id=<dataset id> (repeatable)")
        limits.check_ids(ids)
        return ids

    async def ws_retract(request: Request) -> Response:
        binding = writer(request, legacy=True)
        outcome = await run_in_threadpool(service.retract, await form_ids(request), binding)
        return ws_response(outcome.messages)

    async def ws_delete(request: Request) -> Response:
        binding = writer(request, legacy=True)
        outcome = await run_in_threadpool(service.delete, await form_ids(request), binding)
        return ws_response(outcome.messages)

    async def json_body(request: Request) -> object:
        body = await write_body(request)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"invalid JSON: {exc}") from None

    async def api_publish(request: Request) -> Response:
        binding = writer(request)
        batch = await json_body(request)

        def publish() -> Outcome:
            limits.check_batch(batch)
            return service.publish_batch(batch, binding)

        outcome = await run_in_threadpool(publish)
        return JSONResponse(
            {
                "ok": True,
                "published": outcome.published,
                "unchanged": outcome.unchanged,
                "seq": service.seq,
            }
        )

    def ids_from(body: object) -> list[str]:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("ids"), list)
            or not body["ids"]
            or not all(isinstance(i, str) and i for i in body["ids"])
        ):
            raise BadRequest('expected {"ids": ["<dataset id>", ...]}')
        limits.check_ids(body["ids"])
        return list(body["ids"])

    async def api_retract(request: Request) -> Response:
        binding = writer(request)
        ids = ids_from(await json_body(request))
        outcome = await run_in_threadpool(service.retract, ids, binding)
        return JSONResponse({"ok": True, "retracted": outcome.retracted, "seq": service.seq})

    async def api_delete(request: Request) -> Response:
        binding = writer(request)
        ids = ids_from(await json_body(request))
        outcome = await run_in_threadpool(service.delete, ids, binding)
        return JSONResponse({"ok": True, "deleted": outcome.deleted, "seq": service.seq})

    async def api_status(request: Request) -> Response:
        stats = service.stats()
        return JSONResponse(
            {
                "role": settings.role,
                "version": __version__,
                "records": stats.records,
                "seq": stats.seq,
                "opened_in_seconds": round(stats.opened_in, 3),
            }
        )

    def replicator(request: Request) -> Principal:
        return verifier.verify(request.headers.get("authorization"), "esgf:replicate")

    def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
        return value

    async def api_changes(request: Request) -> Response:
        replicator(request)
        since = int_param(request, "since", 0, 0, 2**62)
        limit = int_param(request, "limit", 100, 0, MAX_LIMIT)
        raw_wait = request.query_params.get("wait") or "0"
        try:
            wait = float(raw_wait)
        except ValueError:
            raise BadRequest(f"wait must be a number of seconds, got {raw_wait!r}") from None
        if not 0 <= wait <= MAX_WAIT:
            raise BadRequest(f"wait must be between 0 and {MAX_WAIT:.0f} seconds")
        if wait and limit:
            await feed.wait_beyond(lambda: service.seq, since, wait)
        encoding = request.query_params.get("encoding", "json")
        if encoding not in ("json", "zlib"):
            raise BadRequest(f"encoding must be json or zlib, got {encoding!r}")
        query = ChangesQuery(since, limit, wait, compressed=encoding == "zlib")
        body = await run_in_threadpool(service.read, lambda store: encode_changes(store, query))
        return Response(body, media_type="application/json")

    async def api_snapshot(request: Request) -> Response:
        replicator(request)
        snap = await run_in_threadpool(make_snapshot, service, settings.state_dir / "snapshots")
        log.info("snapshot served", extra={"seq": snap.seq, "bytes": snap.size})
        return StreamingResponse(
            iterate_in_threadpool(snap.stream()),
            media_type="application/x-tar",
            headers={SEQ_HEADER: str(snap.seq), "Content-Length": str(snap.size)},
            background=BackgroundTask(snap.remove),
        )

    async def api_digest(request: Request) -> Response:
        replicator(request)
        body = await json_body(request)
        core, ranges, split = _digest_request(body)

        def compute() -> dict[str, object]:
            if split is not None:
                low, high, parts = split
                bounds = service.read(lambda store: store.split_points(core, low, high, parts))
                return {"bounds": bounds}
            if ranges is None:
                raise BadRequest("expected ranges or split")
            out: list[dict[str, object]] = []
            for low, high, listing in ranges:
                if listing:
                    out.append(
                        {"lo": low, "hi": high, "ids": list(service.store.hashes(core, low, high))}
                    )
                else:
                    count, sha = service.store.digest(core, low, high)
                    out.append({"lo": low, "hi": high, "count": count, "sha256": sha})
            return {"digests": out}

        return Response(
            orjson.dumps({"core": core, **await run_in_threadpool(compute)}),
            media_type="application/json",
        )

    def following(request: Request) -> Follower:
        replicator(request)
        if follower is None:
            raise BadRequest("this index is the master: it follows no upstream")
        return follower

    async def replication_status(request: Request) -> Response:
        replicator(request)
        body: dict[str, object] = {"role": settings.role, "seq": service.seq, "lag": lag()}
        if follower is not None:
            body["upstream"] = follower.status().as_json()
            body["applied_records"] = follower.applied_records
            body["applied_entries"] = follower.applied_entries
        return JSONResponse(body)

    async def replication_pause(request: Request) -> Response:
        target = following(request)
        await run_in_threadpool(target.pause)
        return JSONResponse({"ok": True, "paused": True, "seq": service.seq})

    async def replication_resume(request: Request) -> Response:
        target = following(request)
        await run_in_threadpool(target.resume)
        return JSONResponse({"ok": True, "paused": False, "seq": service.seq})

    async def livez(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        try:
            await run_in_threadpool(service.read, lambda store: store.last_seq())
        except Exception as exc:  # the store is what readiness means here
            return JSONResponse({"ready": False, "reason": f"store unavailable: {exc}"}, 503)
        body: dict[str, object] = {
            "ready": True,
            "role": settings.role,
            "seq": service.seq,
            "lag": round(lag(), 3),
            "records": service.stats().records,
        }
        if follower is not None:
            status = follower.status()
            body["upstream"] = status.as_json()
            body["max_lag"] = settings.max_lag
            if not follower.has_data:
                body["ready"] = False
                body["reason"] = "waiting for the first copy of the upstream index"
            elif status.lag > settings.max_lag:
                body["ready"] = False
                body["reason"] = (
                    f"replication lag {status.lag:.1f} s exceeds {settings.max_lag:.0f} s "
                    f"(upstream {status.state})"
                )
        return JSONResponse(body, 200 if body["ready"] else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    async def openapi_doc(request: Request) -> Response:
        return JSONResponse(openapi.document(__version__))

    H, J, X = _html_error, _json_error, ws_error
    routes = []

    def add(
        path: str,
        endpoint: str,
        handler: Handler,
        errors: Callable[[int, str], Response],
        methods: list[str],
        slash: bool = False,
    ) -> None:
        wrapped = measured(endpoint, handler, errors)
        routes.append(Route(path, wrapped, methods=methods))
        if slash:
            routes.append(Route(path + "/", wrapped, methods=methods))

    add("/esg-search/search", "search", search, H, ["GET"], slash=True)
    add("/esg-search/wget", "wget", wget_script, H, ["GET", "POST"], slash=True)
    add("/esg-search/ws/ping", "ws_ping", ws_ping, X, ["GET"], slash=True)
    add("/esg-search/ws/publish", "ws_publish", ws_publish, X, ["POST"], slash=True)
    add("/esg-search/ws/unpublish", "ws_unpublish", ws_unpublish, X, ["POST"], slash=True)
    add("/esg-search/ws/update", "ws_update", ws_update, X, ["POST"], slash=True)
    add("/esg-search/ws/retract", "ws_retract", ws_retract, X, ["POST"], slash=True)
    add("/esg-search/ws/delete", "ws_delete", ws_delete, X, ["POST"], slash=True)
    add("/api/v1/publish", "api_publish", api_publish, J, ["POST"])
    add("/api/v1/retract", "api_retract", api_retract, J, ["POST"])
    add("/api/v1/delete", "api_delete", api_delete, J, ["POST"])
    add("/api/v1/status", "api_status", api_status, J, ["GET"])
    add("/api/v1/changes", "api_changes", api_changes, J, ["GET"])
    add("/api/v1/snapshot", "api_snapshot", api_snapshot, J, ["GET"])
    add("/api/v1/digest", "api_digest", api_digest, J, ["POST"])
    add("/api/v1/replication", "replication", replication_status, J, ["GET"])
    add("/api/v1/replication/pause", "replication_pause", replication_pause, J, ["POST"])
    add("/api/v1/replication/resume", "replication_resume", replication_resume, J, ["POST"])
    add("/livez", "livez", livez, J, ["GET"])
    add("/readyz", "readyz", readyz, J, ["GET"])
    add("/metrics", "metrics", prometheus, J, ["GET"])
    add("/openapi.json", "openapi", openapi_doc, J, ["GET"])
    for path, name, handler, methods in stac_routes.endpoints(service, settings.search_timeout):
        add(path, name, handler, stac_routes.error_response, methods)
    for path, name, handler, methods in web.endpoints():
        add(path, name, handler, J, methods)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return _json_error(status, "not found" if status == 404 else "method not allowed")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.service = service
    app.state.exit_hooks = [feed.close]
    return app
