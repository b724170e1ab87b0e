"""The DNS load balancer as one process: the health checker, then either one of the zone's
authoritative DNS servers or the RFC 2136 updater, plus a small HTTP side (`/livez`, `/readyz`,
`/metrics`, `/api/v1/status`) for supervisors, `esgf-ha status` and Prometheus.

Several of these run at once, one per configured DNS server; each checks every site itself and
shares nothing with the others, so losing one (its site, its machine) leaves the rest answering.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path

import dns.message
import dns.rcode
import uvicorn
from prometheus_client import Counter, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esgf_ha import __version__
from esgf_ha.balancer.answers import KINDS, Zone, answer
from esgf_ha.balancer.health import HealthChecker, SiteHealth
from esgf_ha.balancer.ratelimit import RateLimiter
from esgf_ha.balancer.rfc2136 import DynamicUpdater, UpdateFailed
from esgf_ha.balancer.server import start_dns
from esgf_ha.common import edge
from esgf_ha.common.server import Shutdown, bind, graceful, url_of, uvicorn_config, write_endpoint
from esgf_ha.federation.config import FederationConfig, NameServer

log = logging.getLogger("esgf_ha.balancer")
RESYNC_SECONDS = 30.0


class Metrics(edge.Metrics):
    """The common HTTP metrics plus the DNS side's."""

    def __init__(self) -> None:
        """Register the DNS series beside the edge's, so a scrape shows them before any query."""
        super().__init__("dns")
        self.queries = Counter(
            "esgf_ha_dns_queries",
            "DNS queries answered",
            ["transport", "rcode"],
            registry=self.registry,
        )
        self.healthy = Gauge(
            "esgf_ha_site_healthy",
            "1 when the site is in the answers",
            ["site"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "esgf_ha_site_transitions", "health state changes", ["site"], registry=self.registry
        )
        self.updates = Counter(
            "esgf_ha_dns_dynamic_updates",
            "RFC 2136 updates sent",
            ["result"],
            registry=self.registry,
        )
        self.limited = Gauge(
            "esgf_ha_dns_rate_limited",
            "queries over the per-client rate limit (dropped or answered truncated)",
            registry=self.registry,
        )


class Balancer:
    """One DNS server of the zone with the health checker that decides its answers; each
    checks every site itself, so no balancer depends on another to answer."""

    def __init__(
        self,
        config: FederationConfig,
        verify: ssl.SSLContext | bool = True,
        server: NameServer | None = None,
    ) -> None:
        """`server` picks which of the configured name servers this process is; `verify` is
        what health checks use for the sites' certificates."""
        self.config = config
        self.server = server or config.dns.name_server(None)
        self.metrics = Metrics()
        self.limiter = (
            RateLimiter(config.dns.rate_limit, config.dns.rate_burst)
            if config.dns.rate_limit > 0
            else None
        )
        limiter = self.limiter
        self.metrics.limited.set_function(lambda: limiter.limited if limiter else 0)
        self.zone = Zone.from_config(config.dns, config.sites)
        self.checker = HealthChecker(config, self._health_changed, verify=verify)
        self.updater = (
            DynamicUpdater(config.dns, config.dns.rfc2136)
            if config.dns.mode == "rfc2136" and config.dns.rfc2136
            else None
        )
        self.dns_port = 0
        self._push = asyncio.Event()
        self.started = time.time()

    # -- health → answers ----------------------------------------------------------------------
    def _health_changed(self, sites: list[SiteHealth]) -> None:
        for h in sites:
            self.metrics.healthy.labels(h.site.name).set(1 if h.healthy else 0)
        self.zone.set_healthy([h.site for h in sites if h.healthy])
        self._push.set()

    def respond(self, query: dns.message.Message, transport: str) -> dns.message.Message:
        """Answer one query from the zone as health last left it, counting it by rcode."""
        response = answer(query, self.zone)
        self.metrics.queries.labels(transport, dns.rcode.to_text(response.rcode())).inc()
        return response

    async def _updates(self) -> None:
        assert self.updater is not None
        while True:
            resync = False
            try:
                await asyncio.wait_for(self._push.wait(), RESYNC_SECONDS)
            except TimeoutError:
                resync = True
            self._push.clear()
            if self.checker.rounds == 0:
                continue
            try:
                await self.updater.push(
                    {k: self.zone.candidates(k) for k in KINDS}, self.zone.every, resync
                )
                self.metrics.updates.labels("ok").inc()
            except UpdateFailed as exc:
                self.metrics.updates.labels("failed").inc()
                log.error("%s", exc)
                await asyncio.sleep(1.0)
                self._push.set()

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        """What `esgf-ha status` and `/readyz` show: the sites' health and what each name
        answers now, including names answered fail-open because no site is healthy."""
        return {
            "version": __version__,
            "mode": self.config.dns.mode,
            "zone": self.config.dns.zone,
            "dns": {
                "name": self.server.ns_fqdn,
                "address": self.server.address,
                "port": self.dns_port,
            },
            "serial": self.zone.serial,
            "ttl": self.config.dns.ttl,
            "rounds": self.checker.rounds,
            "sites": [h.as_json() for h in self.checker.sites],
            "answering": {kind: self.zone.candidates(kind) for kind in KINDS},
            "fail_open": [
                kind
                for kind in KINDS
                if self.zone.every.get(kind) and not self.zone.healthy.get(kind)
            ],
            "rate_limited": None if self.limiter is None else self.limiter.limited,
            "rfc2136": None
            if self.updater is None
            else {
                "server": f"{self.updater.rfc.server}:{self.updater.rfc.port}",
                "pushed": self.updater.pushed,
                "updates": self.updater.updates,
                "failures": self.updater.failures,
            },
        }

    def app(self) -> Starlette:
        """The small HTTP side for supervisors and Prometheus; DNS itself is not HTTP."""

        async def livez(request: Request) -> Response:
            return JSONResponse({"ok": True})

        async def readyz(request: Request) -> Response:
            # ready once a round of health checks has decided what to answer
            waiting = [] if self.checker.rounds > 0 else ["no round of health checks done yet"]
            return edge.readiness("dns", waiting, **self.status())

        async def status(request: Request) -> Response:
            return JSONResponse(self.status())

        async def metrics(request: Request) -> Response:
            return self.metrics.response()

        def route(path: str, name: str, handler: edge.Handler) -> Route:
            return Route(path, edge.measured(name, handler, self.metrics), methods=["GET"])

        return Starlette(
            routes=[
                route("/livez", "livez", livez),
                route("/readyz", "readyz", readyz),
                route("/api/v1/status", "api_status", status),
                route("/metrics", "metrics", metrics),
            ],
            exception_handlers=edge.ROUTING_ERRORS,
        )

    # -- running -------------------------------------------------------------------------------
    async def run(self, state_dir: Path, shutdown: Shutdown | None = None) -> None:
        """Check health, answer DNS (or push RFC 2136 updates) and serve the HTTP side until
        `shutdown`; the endpoint file in `state_dir` tells tests and `status` the ports."""
        tasks = [asyncio.create_task(self.checker.run(), name="health")]
        udp = tcp = None
        info: dict[str, object] = {}
        if self.updater is None:
            self.dns_port, udp, tcp = await start_dns(
                self.server.address, self.server.port, self.respond, self.limiter
            )
            info = {
                "dns_name": self.server.ns_fqdn,
                "dns_address": self.server.address,
                "dns_port": self.dns_port,
            }
            log.info("answering DNS", extra={"zone": self.config.dns.zone, **info})
        else:
            tasks.append(asyncio.create_task(self._updates(), name="rfc2136"))
        sock = bind(self.server.address, self.server.http_port)
        app = self.app()
        config = uvicorn_config(app)
        server = uvicorn.Server(config)
        config.app = graceful(server, app, shutdown or Shutdown(), service="dns")
        url = url_of(sock)
        write_endpoint(state_dir, "dns", {"url": url, **info})
        log.info("listening", extra={"service": "dns", "url": url})
        try:
            await server.serve(sockets=[sock])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if udp is not None:
                udp.close()
            if tcp is not None:
                tcp.close()
            await self.checker.aclose()
