"""A client that reaches a service name the way a well-behaved user's tool does: it asks the
federation's DNS servers (the next one when one does not answer, as a stub resolver does), keeps
the answer for its TTL, and when a connection to one address fails it tries the next one before
giving up. The demo check and the failover benchmark use it."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx


@dataclass
class Resolved:
    addresses: list[str]
    expires: float


@dataclass
class ServiceClient:
    servers: list[tuple[str, int]]  # (address, port) of each DNS server, asked in turn
    timeout: float = 5.0
    dns_timeout: float = 0.5
    cache: dict[str, Resolved] = field(default_factory=dict)
    retries: int = 0  # connection failures that a next address made good
    failures: int = 0  # requests that failed on every address

    def resolve(self, name: str) -> list[str]:
        now = time.monotonic()
        hit = self.cache.get(name)
        if hit is not None and hit.expires > now:
            return hit.addresses
        query = dns.message.make_query(name, dns.rdatatype.A)
        response = None
        for address, port in self.servers:
            try:
                response = dns.query.udp(query, address, port=port, timeout=self.dns_timeout)
                break
            except (OSError, dns.exception.DNSException):
                continue
        if response is None:
            return hit.addresses if hit else []  # a stale answer beats none
        addresses: list[str] = []
        ttl = 0
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.A:
                addresses += [str(rr) for rr in rrset]
                ttl = rrset.ttl
        self.cache[name] = Resolved(addresses, now + ttl)
        return addresses

    def all_addresses(self, name: str, rounds: int = 8) -> set[str]:
        """Every address the DNS hands out for a name now (it answers one at random)."""
        seen: set[str] = set()
        for _ in range(rounds):
            self.cache.pop(name, None)
            seen |= set(self.resolve(name))
        return seen

    def get(self, client: httpx.Client, name: str, port: int, path: str) -> httpx.Response:
        """GET http://<name>:<port><path>, connecting to the addresses the DNS gives."""
        failed: set[str] = set()
        last: Exception | None = None
        for round_ in range(3):
            addresses = [a for a in self.resolve(name) if a not in failed]
            random.shuffle(addresses)
            for address in addresses:
                try:
                    r = client.get(
                        f"http://{address}:{port}{path}",
                        headers={"Host": f"{name}:{port}"},
                        timeout=self.timeout,
                    )
                except httpx.TransportError as exc:
                    last = exc
                    failed.add(address)
                    self.cache.pop(name, None)  # that answer is stale: ask again next time
                    continue
                if failed:
                    self.retries += 1
                return r
            # every address we were given failed: wait a little for a fresh answer
            time.sleep(0.2 * (round_ + 1))
            if round_ == 1:
                failed.clear()  # the last round tries every address again
        self.failures += 1
        raise httpx.ConnectError(f"no address of {name} answered: {last}")
