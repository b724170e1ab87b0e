"""What our authoritative server answers: the zone's SOA and NS, and for each service name the
addresses of healthy sites, chosen at random, with a short TTL.

Pure functions over dnspython messages, so the rules can be tested without sockets.
"""

from __future__ import annotations

import ipaddress
import random
import time
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

from esgf_ha.federation.config import DnsConfig, SiteConfig

KINDS = ("search", "data")
NS_LABEL = "ns1"
SOA_TIMERS = (3600, 600, 86400)  # refresh, retry, expire: we are the only server of the zone


@dataclass
class Zone:
    """The zone's names and the addresses each service name may answer with right now."""

    origin: dns.name.Name
    services: dict[dns.name.Name, str]  # name → "search" | "data"
    ttl: int
    max_records: int
    ns_address: str
    every: dict[str, list[str]] = field(default_factory=dict)  # service → site addresses
    healthy: dict[str, list[str]] = field(default_factory=dict)
    serial: int = field(default_factory=lambda: int(time.time()))
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
            ns_address=dns_config.address,
            every={kind: [s.address for s in sites if kind in s.services()] for kind in KINDS},
        )

    @property
    def ns_name(self) -> dns.name.Name:
        return dns.name.Name((NS_LABEL, *self.origin.labels))

    def set_healthy(self, healthy_sites: Sequence[SiteConfig]) -> None:
        healthy = {
            kind: [s.address for s in healthy_sites if kind in s.services()] for kind in KINDS
        }
        if healthy != self.healthy:
            self.healthy = healthy
            self.serial = max(self.serial + 1, int(time.time()))

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
        text = f"{self.ns_name} {hostmaster} {self.serial} {refresh} {retry} {expire} {self.ttl}"
        return dns.rrset.from_text(self.origin, self.ttl, "IN", "SOA", text)

    def ns(self) -> dns.rrset.RRset:
        return dns.rrset.from_text(self.origin, self.ttl, "IN", "NS", self.ns_name.to_text())

    def ns_glue(self) -> dns.rrset.RRset:
        kind = "A" if ipaddress.ip_address(self.ns_address).version == 4 else "AAAA"
        return dns.rrset.from_text(self.ns_name, self.ttl, "IN", kind, self.ns_address)


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
            response.additional.append(zone.ns_glue())
    elif qname == zone.ns_name:
        glue = zone.ns_glue()
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
