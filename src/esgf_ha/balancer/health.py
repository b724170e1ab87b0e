"""Health checks of the sites: each site's index and data node `/readyz`, on a fixed interval,
with failure and recovery thresholds so one lost probe does not flap the DNS answers.

A site is healthy only when both its services are ready: a stale replica index and a data node
with an unreadable root each make the site a bad place to send a user.

Every site is checked by its own task, and every check has a deadline for the whole of it
(connect, request, reading the answer): a hung site (its processes stopped, so the kernel still
accepts connections that nobody answers) or one cut off from the network (no answer at all)
fails its check after `health.timeout` seconds, as fast as a dead one, and never delays the
checks of the other sites.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from esgf_ha.common.index_client import AsyncIndexClient, IndexUnreachable
from esgf_ha.federation.config import FederationConfig, SiteConfig

log = logging.getLogger("esgf_ha.balancer.health")


@dataclass
class SiteHealth:
    site: SiteConfig
    healthy: bool = False
    checked: bool = False
    passes: int = 0
    failures: int = 0
    since: float = field(default_factory=time.time)
    reason: str = "not checked yet"
    checks: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "site": self.site.name,
            "address": self.site.address,
            "healthy": self.healthy,
            "since": self.since,
            "reason": self.reason,
            "consecutive_passes": self.passes,
            "consecutive_failures": self.failures,
        }


class HealthChecker:
    def __init__(
        self,
        config: FederationConfig,
        on_change: Callable[[list[SiteHealth]], None] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.policy = config.health
        self.sites = [SiteHealth(site) for site in config.sites]
        self.on_change = on_change
        # one client per service of each site, for its `/readyz` only
        self._clients = {
            (site.name, what): AsyncIndexClient(
                url,
                verify=verify,
                timeout=self.policy.timeout,  # each phase; `probe` bounds the whole check
                # a fresh connection per probe: a reused one could hide a site that stopped
                # accepting
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            for site in config.sites
            for what, url in (("index", site.index_url), ("data", site.data_url))
            if url
        }

    def healthy(self) -> list[SiteConfig]:
        return [h.site for h in self.sites if h.healthy]

    async def _ready(self, what: str, client: AsyncIndexClient) -> str | None:
        try:
            r = await client.send("GET", "/readyz")
        except IndexUnreachable as exc:
            return f"{what}: {exc}"
        except httpx.HTTPError as exc:
            return f"{what}: {type(exc).__name__}: {exc}".rstrip(": ")
        if r.status_code != 200:
            return f"{what}: /readyz answered {r.status_code}: {r.text[:200]}"
        return None

    async def probe(self, site: SiteConfig) -> str | None:
        """None when the site is ready, otherwise why not. Its services are asked at once,
        and the whole check ends at the deadline whatever the peer does."""
        clients = [(w, c) for (name, w), c in self._clients.items() if name == site.name]
        try:
            async with asyncio.timeout(self.policy.timeout):
                problems = await asyncio.gather(*(self._ready(w, c) for w, c in clients))
        except TimeoutError:
            return f"no answer within {self.policy.timeout:g} s"
        return next((p for p in problems if p is not None), None)

    def record(self, health: SiteHealth, problem: str | None) -> bool:
        """Apply one probe result to the thresholds; True when the site changed state."""
        health.checks += 1
        first = not health.checked
        health.checked = True
        if problem is None:
            health.passes += 1
            health.failures = 0
            turn = not health.healthy and (first or health.passes >= self.policy.recoveries)
            health.reason = "ready"
        else:
            health.failures += 1
            health.passes = 0
            # an unchecked site starts out of the answers (fail open covers a total outage)
            turn = health.healthy and health.failures >= self.policy.failures
            health.reason = problem
        if turn:
            health.healthy = not health.healthy
            health.since = time.time()
            log.warning(
                "site %s",
                "healthy" if health.healthy else "unhealthy",
                extra={"site": health.site.name, "reason": health.reason},
            )
        return turn

    @property
    def rounds(self) -> int:
        """Completed rounds: how many times every site has been checked."""
        return min((h.checks for h in self.sites), default=0)

    async def check_site(self, health: SiteHealth) -> bool:
        rounds = self.rounds
        changed = self.record(health, await self.probe(health.site))
        # the first complete round decides the first answers, whatever changed
        if (changed or (rounds == 0 and self.rounds == 1)) and self.on_change is not None:
            self.on_change(self.sites)
        return changed

    async def check_once(self) -> bool:
        changed = await asyncio.gather(*(self.check_site(h) for h in self.sites))
        return any(changed)

    async def _run_site(self, health: SiteHealth) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.check_site(health)
            except Exception:  # a checker that dies silently would freeze the answers
                log.exception("health check failed", extra={"site": health.site.name})
            await asyncio.sleep(max(0.0, self.policy.interval - (time.monotonic() - began)))

    async def run(self) -> None:
        """Check every site on its own schedule, until cancelled."""
        await asyncio.gather(*(self._run_site(h) for h in self.sites))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
