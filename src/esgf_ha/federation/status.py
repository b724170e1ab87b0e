"""What `esgf-ha status` shows: each site's readiness and replication lag, data-replication
progress, and what the DNS answers right now — read from the services themselves."""

from __future__ import annotations

import ssl
from dataclasses import asdict, dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx
import orjson

from esgf_ha.federation.config import FederationConfig
from esgf_ha.federation.plan import master_url, site_state
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
class FederationState:
    master: ServiceState
    sites: list[SiteState]
    dns: ServiceState | None
    answers: dict[str, list[str]]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _probe(client: httpx.Client, url: str) -> ServiceState:
    state = ServiceState(url)
    try:
        r = client.get(url + "/readyz")
    except httpx.HTTPError as exc:
        state.error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return state
    state.ready = r.status_code == 200
    try:
        body = r.json()
        state.detail = body if isinstance(body, dict) else {}
    except ValueError:
        state.detail = {}
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


def collect(config: FederationConfig, verify: ssl.SSLContext | bool = True) -> FederationState:
    with httpx.Client(timeout=2.0, verify=verify) as client:
        master = _probe(client, master_url(config))
        sites = []
        for site in config.sites:
            data_url = site.data_url
            sites.append(
                SiteState(
                    site.name,
                    site.address,
                    _probe(client, site.index_url),
                    _probe(client, data_url) if data_url else None,
                    replication=read_summary(site_state(config, site) / "replicator"),
                )
            )
        dns_state = None
        endpoint = config.state_dir / "dns" / "dns.endpoint.json"
        dns_port = config.dns.port
        if endpoint.exists():
            info = orjson.loads(endpoint.read_bytes())
            dns_state = _probe(client, str(info["url"]))
            dns_port = int(info.get("dns_port") or dns_port)
            health = {s["site"]: s for s in dns_state.detail.get("sites", [])}
            for st in sites:
                if st.name in health:
                    st.healthy_in_dns = bool(health[st.name]["healthy"])
                    st.dns_reason = str(health[st.name]["reason"])
    server, port = config.dns.address, dns_port
    if config.dns.mode == "rfc2136" and config.dns.rfc2136 is not None:
        server, port = config.dns.rfc2136.server, config.dns.rfc2136.port
    answers = {
        name: _dns_answers(server, port, config.dns.fqdn(name))
        for name in dict.fromkeys([config.dns.search_name, config.dns.data_name])
    }
    return FederationState(master, sites, dns_state, answers)
