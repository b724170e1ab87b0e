"""Drive an existing DNS server (BIND, PowerDNS, …) with TSIG-signed RFC 2136 dynamic updates.

Several balancers (one per site, typically) may drive the same primary, each from its own
health checks, with no coordination between them. So an update never replaces a whole RRset
(two balancers doing that race, and the slower one undoes the other): it adds or deletes the
records of single sites, and only those whose state changed in this balancer's view.

- A site this balancer sees turn healthy: its records are added (adding a record that exists
  changes nothing, so two balancers agreeing is harmless).
- A site it sees turn unhealthy: its records are deleted, in the same message that adds the
  sites it sees healthy, so a name never goes empty while one site is healthy.
- Every `RESYNC` seconds it adds again the sites it sees healthy, and deletes addresses that
  belong to no configured site (say, from a zone file restored by hand). It never deletes a
  site's record then: a balancer that is slower to see a recovery must not take out a site
  another one has just put back. Deleting is for the moment a balancer sees a site fail.
- When a balancer starts it sends its whole view once, adds and deletes, as it cannot know
  what changed while it was not running.

A dead balancer sends nothing, so it changes nothing; the live ones keep the records right.
The messages carry no prerequisites: adding or deleting one record is idempotent on the server,
and a prerequisite on a whole RRset would only make one balancer's update fail whenever
another had just changed the set, without making the result any more right.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update

from esgf_ha.federation.config import DnsConfig, Rfc2136Config

log = logging.getLogger("esgf_ha.balancer.rfc2136")
TIMEOUT_SECONDS = 5.0


class UpdateFailed(RuntimeError):
    pass


def _kind(address: str) -> str:
    return "A" if ipaddress.ip_address(address).version == 4 else "AAAA"


class DynamicUpdater:
    def __init__(self, dns_config: DnsConfig, rfc: Rfc2136Config) -> None:
        self.rfc = rfc
        self.zone = dns.name.from_text(rfc.zone or dns_config.zone)
        # one name for both services resolves to the data sites (later entry wins), as in answers
        self.names = {
            dns_config.fqdn(dns_config.search_name): "search",
            dns_config.fqdn(dns_config.data_name): "data",
        }
        self.ttl = dns_config.ttl
        self.keyring = dns.tsigkeyring.from_text({rfc.tsig_key_name: rfc.tsig_secret})
        self.pushed: dict[str, list[str]] | None = None  # the view last sent, service → wanted
        self.updates = 0
        self.failures = 0

    def _update(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(
            self.zone,
            keyring=self.keyring,
            keyname=dns.name.from_text(self.rfc.tsig_key_name),
            keyalgorithm=self.rfc.tsig_algorithm,
        )

    def changes(
        self,
        wanted: Mapping[str, Sequence[str]],
        every: Mapping[str, Sequence[str]],
        resync: bool = False,
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(name, address) pairs to add and to delete, from this balancer's view: `wanted` the
        addresses each service should answer with, `every` all the sites' addresses."""
        adds, deletes = [], []
        for name, service in self.names.items():
            before = None if self.pushed is None else set(self.pushed.get(service, ()))
            for address in every.get(service, ()):
                want = address in wanted.get(service, ())
                if want and (resync or before is None or address not in before):
                    adds.append((name, address))
                elif not want and (before is None or address in before):
                    deletes.append((name, address))
        return adds, deletes

    def message(
        self, adds: Sequence[tuple[str, str]], deletes: Sequence[tuple[str, str]]
    ) -> dns.update.UpdateMessage:
        update = self._update()
        for name, address in adds:  # adds first: the name never goes empty
            update.add(name, self.ttl, _kind(address), address)
        for name, address in deletes:
            update.delete(name, _kind(address), address)
        return update

    async def strangers(self, every: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
        """Addresses the primary answers that belong to no configured site of the service."""
        out = []
        for name, service in self.names.items():
            known = set(every.get(service, ()))
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                response = await self._send(dns.message.make_query(name, rdtype))
                for rrset in response.answer:
                    if rrset.rdtype == rdtype:
                        out += [(name, str(rr)) for rr in rrset if str(rr) not in known]
        return out

    async def push(
        self,
        wanted: Mapping[str, Sequence[str]],
        every: Mapping[str, Sequence[str]],
        resync: bool = False,
    ) -> int:
        """Send what changed in this balancer's view (everything, the first time; the healthy
        sites again, with resync). Returns the number of records touched."""
        adds, deletes = self.changes(wanted, every, resync)
        if resync:
            deletes += await self.strangers(every)
        if adds or deletes:
            response = await self._send(self.message(adds, deletes))
            if response.rcode() != dns.rcode.NOERROR:
                self.failures += 1
                raise UpdateFailed(
                    f"{self.rfc.server}:{self.rfc.port} refused the update: "
                    f"{dns.rcode.to_text(response.rcode())}"
                )
            self.updates += 1
            log.info(
                "dynamic update sent",
                extra={"add": [a for _, a in adds], "delete": [a for _, a in deletes]},
            )
        self.pushed = {k: list(v) for k, v in wanted.items()}
        return len(adds) + len(deletes)

    async def _send(self, message: dns.message.Message) -> dns.message.Message:
        try:
            return await dns.asyncquery.tcp(
                message, self.rfc.server, port=self.rfc.port, timeout=TIMEOUT_SECONDS
            )
        except (OSError, dns.exception.DNSException) as exc:
            self.failures += 1
            raise UpdateFailed(
                f"update to {self.rfc.server}:{self.rfc.port} failed: {exc}"
            ) from exc
