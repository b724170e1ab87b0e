"""Queries per second per client address, for our DNS server (`dns.rate_limit`).

A token bucket per client: `rate` tokens a second, at most `burst` saved up. Over the limit a
UDP query is dropped, except every `SLIP`-th, which gets an empty truncated answer: a real
resolver behind a busy address then asks again over TCP and still gets through, while a forged
source address (the victim of a reflection attack) gets nothing bigger than the query.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

SLIP = 2
MAX_CLIENTS = 65536  # bounded memory whatever the number of sources


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.limited = 0  # queries over the limit
        self.slipped = 0  # of those, answered truncated instead of dropped

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            while len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)  # the least recently heard client
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[client] = bucket
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        self.limited += 1
        return False

    def slip(self) -> bool:
        """Whether this over-limit query gets a truncated answer rather than nothing."""
        if self.limited % SLIP == 0:
            self.slipped += 1
            return True
        return False
