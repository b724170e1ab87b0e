"""The one retry policy of the project's HTTP clients: capped exponential backoff.

A caller marks an attempt's failure as worth another try by raising `Transient`; anything else
ends the loop at once. Sync and async callers share the same delays, so a publisher, a
replicator and a data node wait alike for an index that restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Transient(Exception):
    """This attempt failed in a way a later one may not (a refused connection, a 5xx)."""


@dataclass(frozen=True)
class Backoff:
    """`retries` more attempts after the first, waiting `first`, 2×`first`, … up to `cap`."""

    retries: int = 5
    first: float = 0.5
    cap: float = 10.0

    def delay(self, n: int) -> float:
        """The wait after failure `n` (0 for the first), for a loop that never gives up."""
        return min(self.first * 2 ** min(n, 64), self.cap)

    def delays(self) -> Iterator[float]:
        for n in range(self.retries):
            yield self.delay(n)

    def run(
        self,
        attempt: Callable[[], T],
        *,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """`attempt()` until it returns; the last `Transient` once no retry is left."""
        wait = self._waits(on_retry)
        while True:
            try:
                return attempt()
            except Transient as exc:
                sleep(wait(exc))

    async def arun(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        on_retry: Callable[[str], None] | None = None,
    ) -> T:
        """The same loop for a coroutine: the event loop goes on while it waits."""
        wait = self._waits(on_retry)
        while True:
            try:
                return await attempt()
            except Transient as exc:
                await asyncio.sleep(wait(exc))

    def _waits(self, on_retry: Callable[[str], None] | None) -> Callable[[Transient], float]:
        """How long to wait after each failure, told to `on_retry`; the failure itself is
        raised again once every retry is spent."""
        delays = self.delays()
        number = 0

        def after(exc: Transient) -> float:
            nonlocal number
            delay = next(delays, None)
            if delay is None:
                raise exc
            number += 1
            if on_retry is not None:
                on_retry(f"{exc}; retry {number}/{self.retries} in {delay:.1f} s")
            return delay

        return after
