"""Bounds on the connections of every HTTP service: a time limit for reading a request's
headers, and a cap on open connections that sheds idle ones first.

uvicorn closes a connection only after a response, when `timeout_keep_alive` runs out: a
connection that sends nothing, or sends its request line a byte at a time, stays open for
ever (900 such connections were held open on the index and the data node, issue 12). Here
a timer runs from the moment a connection opens, or a new request on it begins, until that
request's headers are complete; when it fires the connection is closed. While a body arrives,
each piece restarts the timer, so a body that stops arriving for that long is closed too
(a body that trickles in is bounded by the application's size limits, not by a rate).

Over the connection cap, a new connection first closes the oldest connection that is not in
the middle of a request (idle, or still sending headers); only when every connection is busy
is the new one refused. Idle connections can therefore not lock out a real client.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("esgf_ha.server")


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 20.0  # seconds from connect (or request start) to complete headers
    max_connections: int = 1000  # open connections per service process


class GuardedProtocol(H11Protocol):
    """HTTP/1.1 with a header-read deadline and a connection cap (see the module doc)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", ConnectionLimits())
        self._header_timer: Any = None
        self.opened_at = time.monotonic()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()
        if len(self.connections) > self.limits.max_connections:
            self._shed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_request():
            self._arm()  # a new request begins on a kept-alive connection
        super().data_received(data)
        if self._waiting_for_request():
            return  # still in its headers: their deadline runs on
        self._disarm()
        if self._receiving_body():
            self._arm()  # a body must keep arriving: a stall of `header_timeout` ends it

    def _waiting_for_request(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _receiving_body(self) -> bool:
        return self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete

    def idle(self) -> bool:
        return self._waiting_for_request() and not self.transport.is_closing()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout, self._header_timeout
            )

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._waiting_for_request():
            self.close_idle()
        elif self._receiving_body():
            if self.flow.read_paused:
                self._arm()  # the application has not taken what came: not the client's stall
            else:
                log.info("request body stalled: connection closed")
                self.transport.close()

    def close_idle(self) -> None:
        # mid-request, h11 refuses a clean close: the connection is simply dropped
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def _shed(self) -> None:
        others = [c for c in self.connections if c is not self and isinstance(c, GuardedProtocol)]
        idle = [c for c in others if c.idle()]
        if idle:
            min(idle, key=lambda c: c.opened_at).close_idle()
            return
        log.warning(
            "connection refused: every one of %d connections is busy",
            self.limits.max_connections,
        )
        self.close_idle()
