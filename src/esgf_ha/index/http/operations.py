"""Operations endpoints of the index: liveness, readiness, status, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Gauge
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from esgf_ha import __version__
from esgf_ha.common.edge import PREFIX, Metrics, readiness
from esgf_ha.index import openapi
from esgf_ha.index.follower import AnyFollower
from esgf_ha.index.service import IndexService
from esgf_ha.index.settings import IndexSettings


def index_metrics(service: IndexService, follower: AnyFollower | None) -> Metrics:
    """The common request metrics plus the index's gauges, read when scraped."""
    metrics = Metrics("index")
    registry = metrics.registry
    records = Gauge(PREFIX + "index_records", "records in the index", ["type"], registry=registry)
    for core in ("Dataset", "File", "Aggregation"):
        records.labels(core).set_function(_live_count(service, core))
    seq = Gauge(PREFIX + "index_sequence", "last change-log sequence", registry=registry)
    seq.set_function(lambda: service.seq)
    lag = Gauge(
        PREFIX + "replication_lag_seconds",
        "how stale this index may be (0 on the master)",
        registry=registry,
    )
    lag.set_function(lambda: follower.lag() if follower else 0.0)
    if follower is not None:
        applied = Gauge(
            PREFIX + "replication_applied_records",
            "records applied from the upstream change log since start",
            registry=registry,
        )
        applied.set_function(lambda: follower.applied_records)
        boots = Gauge(
            PREFIX + "replication_bootstraps", "snapshot bootstraps since start", registry=registry
        )
        boots.set_function(lambda: follower.bootstraps)
    return metrics


def _live_count(service: IndexService, core: str) -> Callable[[], float]:
    return lambda: float(service.cores[core].live_count)


class Operations:
    def __init__(
        self,
        service: IndexService,
        settings: IndexSettings,
        follower: AnyFollower | None,
        metrics: Metrics,
    ) -> None:
        self.service = service
        self.settings = settings
        self.follower = follower
        self.metrics = metrics

    def lag(self) -> float:
        return self.follower.lag() if self.follower is not None else 0.0

    async def livez(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.service.check_readable)
        except Exception as exc:  # the store is what readiness means here
            return readiness("index", [f"store unavailable: {exc}"], role=self.settings.role)
        details: dict[str, object] = {
            "role": self.settings.role,
            "seq": self.service.seq,
            "lag": round(self.lag(), 3),
            "records": self.service.stats().records,
        }
        return readiness("index", self._replica_problems(details), **details)

    def _replica_problems(self, details: dict[str, object]) -> list[str]:
        if self.follower is None:
            return []
        status = self.follower.status()
        details["upstream"] = status.as_json()
        details["max_lag"] = self.settings.max_lag
        if not self.follower.has_data:
            return ["waiting for the first copy of the upstream index"]
        if status.lag > self.settings.max_lag:
            return [
                f"replication lag {status.lag:.1f} s exceeds {self.settings.max_lag:.0f} s "
                f"(upstream {status.state})"
            ]
        return []

    async def status(self, request: Request) -> Response:
        stats = self.service.stats()
        return JSONResponse(
            {
                "role": self.settings.role,
                "version": __version__,
                "records": stats.records,
                "seq": stats.seq,
                "opened_in_seconds": round(stats.opened_in, 3),
            }
        )

    async def prometheus(self, request: Request) -> Response:
        return self.metrics.response()

    async def openapi_doc(self, request: Request) -> Response:
        return JSONResponse(openapi.document(__version__))
