"""What `esgf-ha status` shows: each site's readiness and replication lag, data-replication
progress, and what each DNS server answers right now (and whether they agree) — read from the
services themselves."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import orjson

from esgf_ha.common.index_client import IndexClient, IndexClientError, Verify
from esgf_ha.common.retry import Backoff
from esgf_ha.federation.config import FederationConfig
from esgf_ha.federation.plan import dns_state, master_url, site_state
from esgf_ha.replicator.state import read_summary

DNS_SAMPLES = 8  # answers are random among healthy sites: ask a few times to see them all


@dataclass
class ServiceState:
    url: str
    ready: bool | None = None  # None: not reachable
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SiteState:
    name: str
    address: str
    index: ServiceState
    data: ServiceState | None
    healthy_in_dns: bool | None = None
    dns_reason: str | None = None
    replication: dict[str, Any] | None = None  # the data replicator's progress, if it runs here


@dataclass
class DnsServerState:
    """One DNS server's view: which sites its own checks find healthy, what it answers."""

    name: str
    address: str
    port: int
    status: ServiceState | None  # its HTTP side; None when it never wrote its endpoint
    healthy: dict[str, bool] = field(default_factory=dict)  # site → in its answers
    answers: dict[str, list[str]] = field(default_factory=dict)  # service name → addresses
    serial: int | None = None


@dataclass
class FederationState:
    master: ServiceState
    sites: list[SiteState]
    dns: ServiceState | None  # the first DNS server's HTTP side
    answers: dict[str, list[str]]  # every address any DNS server answers
    dns_servers: list[DnsServerState] = field(default_factory=list)
    dns_disagreements: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _probe(url: str, verify: Verify) -> ServiceState:
    """One readiness request, no retry: status reports the moment, not a wait."""
    state = ServiceState(url)
    try:
        with IndexClient(url, verify=verify, timeout=2.0, retry=Backoff(retries=0)) as client:
            status, state.detail = client.readiness()
    except IndexClientError as exc:
        state.error = str(exc)
        return state
    state.ready = status == 200
    return state


def _dns_answers(address: str, port: int, name: str) -> list[str]:
    seen: set[str] = set()
    for _ in range(DNS_SAMPLES):
        query = dns.message.make_query(name, dns.rdatatype.A)
        try:
            response = dns.query.udp(query, address, port=port, timeout=1.0)
        except (OSError, dns.exception.DNSException):
            return sorted(seen)
        for rrset in response.answer:
            seen |= {str(rr) for rr in rrset}
    return sorted(seen)


def _disagreements(servers: list[DnsServerState]) -> list[str]:
    """What the DNS servers that answer do not agree on: a site's health, the SOA serial."""
    up = [s for s in servers if s.status is not None and s.status.ready]
    out = []
    for site in sorted({name for s in up for name in s.healthy}):
        views = {s.name: s.healthy.get(site) for s in up}
        if len(set(views.values())) > 1:
            said = ", ".join(f"{n} {'in' if v else 'out'}" for n, v in views.items())
            out.append(f"site {site}: {said}")
    serials = {s.name: s.serial for s in up}
    if len(set(serials.values())) > 1:
        out.append(f"SOA serials differ: {serials}")
    down = [s.name for s in servers if s.status is None or not s.status.ready]
    if down and len(down) < len(servers):
        out.append(f"not answering: {', '.join(down)}")
    return out


def collect(config: FederationConfig, verify: Verify = True) -> FederationState:
    master = _probe(master_url(config), verify)
    sites = []
    for site in config.sites:
        data_url = site.data_url
        sites.append(
            SiteState(
                site.name,
                site.address,
                _probe(site.index_url, verify),
                _probe(data_url, verify) if data_url else None,
                replication=read_summary(site_state(config, site) / "replicator"),
            )
        )
    servers = []
    for server in config.dns.name_servers():
        state = DnsServerState(server.ns_fqdn, server.address, server.port, None)
        endpoint = dns_state(config, server) / "dns.endpoint.json"
        if endpoint.exists():
            info = orjson.loads(endpoint.read_bytes())
            state.status = _probe(str(info["url"]), verify)
            state.port = int(info.get("dns_port") or state.port)
            state.healthy = {
                str(h["site"]): bool(h["healthy"]) for h in state.status.detail.get("sites", [])
            }
            serial = state.status.detail.get("serial")
            state.serial = int(serial) if isinstance(serial, int) else None
        servers.append(state)
    names = list(dict.fromkeys([config.dns.search_name, config.dns.data_name]))
    if config.dns.mode == "rfc2136" and config.dns.rfc2136 is not None:
        # the primary answers, not our processes
        rfc = config.dns.rfc2136
        answers = {n: _dns_answers(rfc.server, rfc.port, config.dns.fqdn(n)) for n in names}
    else:
        for state in servers:
            if state.status is not None and state.status.ready:
                state.answers = {
                    n: _dns_answers(state.address, state.port, config.dns.fqdn(n)) for n in names
                }
        answers = {
            n: sorted({a for state in servers for a in state.answers.get(n, [])}) for n in names
        }
    # a site counts as in the DNS when every server that answers has it in
    for st in sites:
        views = [s for s in servers if st.name in s.healthy]
        if views:
            st.healthy_in_dns = all(s.healthy[st.name] for s in views)
            reasons = [
                str(h["reason"])
                for s in views
                if s.status is not None
                for h in s.status.detail.get("sites", [])
                if h["site"] == st.name and not h["healthy"]
            ]
            st.dns_reason = reasons[0] if reasons else "ready"
    return FederationState(
        master,
        sites,
        servers[0].status if servers else None,
        answers,
        servers,
        _disagreements(servers),
    )
