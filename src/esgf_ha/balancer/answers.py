"""What our authoritative server answers: the zone's SOA and NS, and for each service name the
addresses of healthy sites, chosen at random, with a short TTL.

Pure functions over dnspython messages, so the rules can be tested without sockets.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from esgf_ha.federation.config import DnsConfig, NameServer, SiteConfig

KINDS = ("search", "data")
# refresh, retry, expire: for secondaries, which our servers do not need (each one answers from
# its own health checks); a secondary that copies the zone from one of them still works
SOA_TIMERS = (3600, 600, 86400)


def zone_serial(dns_config: DnsConfig, sites: Sequence[SiteConfig]) -> int:
    """The SOA serial every server of the zone gives: derived from what the zone is made of
    (servers, names, sites, TTL), so servers started at different times agree, and a changed
    config changes it. The per-site answers are not in it: they change every few seconds and
    each server decides them by itself, so no serial could be common to all servers."""
    parts = [dns_config.zone, str(dns_config.ttl), dns_config.search_name, dns_config.data_name]
    parts += [f"{s.ns_fqdn}={s.address}" for s in dns_config.name_servers()]
    parts += [f"{s.name}={s.address}:{','.join(s.services())}" for s in sites]
    digest = hashlib.sha256("\n".join(parts).encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % (2**31 - 2)


@dataclass
class Zone:
    """The zone's names and the addresses each service name may answer with right now."""

    origin: dns.name.Name
    services: dict[dns.name.Name, str]  # name → "search" | "data"
    ttl: int
    max_records: int
    servers: list[NameServer]
    serial: int
    every: dict[str, list[str]] = field(default_factory=dict)  # service → site addresses
    healthy: dict[str, list[str]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_config(cls, dns_config: DnsConfig, sites: Sequence[SiteConfig]) -> Zone:
        origin = dns.name.from_text(dns_config.zone)
        services = {
            dns.name.from_text(dns_config.fqdn(dns_config.search_name)): "search",
            dns.name.from_text(dns_config.fqdn(dns_config.data_name)): "data",
        }
        return cls(
            origin=origin,
            services=services,
            ttl=dns_config.ttl,
            max_records=dns_config.max_records,
            servers=dns_config.name_servers(),
            serial=zone_serial(dns_config, sites),
            every={kind: [s.address for s in sites if kind in s.services()] for kind in KINDS},
        )

    @property
    def ns_names(self) -> list[dns.name.Name]:
        return [dns.name.from_text(s.ns_fqdn) for s in self.servers]

    def set_healthy(self, healthy_sites: Sequence[SiteConfig]) -> None:
        self.healthy = {
            kind: [s.address for s in healthy_sites if kind in s.services()] for kind in KINDS
        }

    def candidates(self, kind: str) -> list[str]:
        """Healthy sites offering the service; all of them when none is (fail open, as
        Route 53 does: a wrong answer may still work, no answer never does)."""
        return list(self.healthy.get(kind) or self.every.get(kind, []))

    def pick(self, kind: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        version = 4 if rdtype == dns.rdatatype.A else 6
        pool = [a for a in self.candidates(kind) if ipaddress.ip_address(a).version == version]
        return self.rng.sample(pool, min(len(pool), self.max_records))

    def soa(self) -> dns.rrset.RRset:
        hostmaster = dns.name.Name(("hostmaster", *self.origin.labels))
        refresh, retry, expire = SOA_TIMERS
        text = (
            f"{self.ns_names[0]} {hostmaster} {self.serial} {refresh} {retry} {expire} {self.ttl}"
        )
        return dns.rrset.from_text(self.origin, self.ttl, "IN", "SOA", text)

    def ns(self) -> dns.rrset.RRset:
        return dns.rrset.from_text(
            self.origin, self.ttl, "IN", "NS", *(n.to_text() for n in self.ns_names)
        )

    def glue(self, name: dns.name.Name | None = None) -> list[dns.rrset.RRset]:
        """Address records of the servers named inside the zone (of one of them, with name);
        a server named in another zone gets its addresses from that zone."""
        out: dict[tuple[dns.name.Name, str], list[str]] = {}
        for server, ns_name in zip(self.servers, self.ns_names, strict=True):
            if not ns_name.is_subdomain(self.origin) or (name is not None and ns_name != name):
                continue
            kind = "A" if ipaddress.ip_address(server.address).version == 4 else "AAAA"
            out.setdefault((ns_name, kind), []).append(server.address)
        return [
            dns.rrset.from_text(ns_name, self.ttl, "IN", kind, *addresses)
            for (ns_name, kind), addresses in out.items()
        ]


def answer(query: dns.message.Message, zone: Zone) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if query.opcode() != dns.opcode.QUERY:
        response.flags &= ~dns.flags.AA
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.flags &= ~dns.flags.AA
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    qname, rdtype = question.name, question.rdtype
    if question.rdclass != dns.rdataclass.IN or not qname.is_subdomain(zone.origin):
        # not our zone: we are authoritative only, never a resolver
        response.flags &= ~dns.flags.AA
        response.set_rcode(dns.rcode.REFUSED)
        return response
    any_type = rdtype == dns.rdatatype.ANY
    if qname == zone.origin:
        if rdtype == dns.rdatatype.SOA or any_type:
            response.answer.append(zone.soa())
        if rdtype == dns.rdatatype.NS or any_type:
            response.answer.append(zone.ns())
            response.additional.extend(zone.glue())
    elif qname in zone.ns_names:
        for glue in zone.glue(qname):
            if glue.rdtype == rdtype or any_type:
                response.answer.append(glue)
    elif qname in zone.services:
        kinds = (dns.rdatatype.A, dns.rdatatype.AAAA) if any_type else (rdtype,)
        for kind in kinds:
            if kind in (dns.rdatatype.A, dns.rdatatype.AAAA):
                picked = zone.pick(zone.services[qname], kind)
                if picked:
                    response.answer.append(
                        dns.rrset.from_text(qname, zone.ttl, "IN", kind.name, *picked)
                    )
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
    if not response.answer:
        # NODATA or NXDOMAIN: the SOA tells resolvers how long to cache the negative answer
        response.authority.append(zone.soa())
    return response
