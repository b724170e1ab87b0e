"""Drive an existing DNS server (BIND, PowerDNS, …) with TSIG-signed RFC 2136 dynamic updates:
each service name's A/AAAA records are replaced by the healthy sites' addresses.

The records are pushed on every health change and again periodically, so a server restored from
an old zone file, or edited by hand, converges back to what the health checks say.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence

import dns.asyncquery
import dns.exception
import dns.name
import dns.rcode
import dns.rdataset
import dns.tsigkeyring
import dns.update

from esgf_ha.federation.config import DnsConfig, Rfc2136Config

log = logging.getLogger("esgf_ha.balancer.rfc2136")


class UpdateFailed(RuntimeError):
    pass


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
        self.pushed: dict[str, list[str]] | None = None
        self.updates = 0
        self.failures = 0

    def message(self, addresses: Mapping[str, Sequence[str]]) -> dns.update.UpdateMessage:
        """One update replacing every service name's A/AAAA records (atomic on the server)."""
        update = dns.update.UpdateMessage(
            self.zone,
            keyring=self.keyring,
            keyname=dns.name.from_text(self.rfc.tsig_key_name),
            keyalgorithm=self.rfc.tsig_algorithm,
        )
        for name, service in self.names.items():
            v4 = [a for a in addresses[service] if ipaddress.ip_address(a).version == 4]
            v6 = [a for a in addresses[service] if ipaddress.ip_address(a).version == 6]
            for kind, values in (("A", v4), ("AAAA", v6)):
                if values:
                    update.replace(name, dns.rdataset.from_text_list("IN", kind, self.ttl, values))
                else:
                    update.delete(name, kind)
        return update

    async def push(self, addresses: Mapping[str, Sequence[str]]) -> None:
        try:
            response = await dns.asyncquery.tcp(
                self.message(addresses), self.rfc.server, port=self.rfc.port, timeout=5.0
            )
        except (OSError, dns.exception.DNSException) as exc:
            self.failures += 1
            raise UpdateFailed(
                f"update to {self.rfc.server}:{self.rfc.port} failed: {exc}"
            ) from exc
        if response.rcode() != dns.rcode.NOERROR:
            self.failures += 1
            raise UpdateFailed(
                f"{self.rfc.server}:{self.rfc.port} refused the update: "
                f"{dns.rcode.to_text(response.rcode())}"
            )
        self.updates += 1
        self.pushed = {k: list(v) for k, v in addresses.items()}
        log.info("dynamic update sent", extra={"addresses": self.pushed})
