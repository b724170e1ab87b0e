"""The replica follower's loop against an upstream that accepts connections and drops them:
each failed step waits its backoff before the next, and the replica says the upstream is
unreachable (with the URL it tried) meanwhile."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from esgf_ha.index.follower import Follower
from esgf_ha.index.service import IndexService


class DroppingUpstream:
    """A TCP listener that closes every connection at once, counting them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def dropping() -> Iterator[DroppingUpstream]:
    upstream = DroppingUpstream()
    yield upstream
    upstream.close()


def test_an_unreachable_upstream_is_retried_with_backoff(
    index_service: IndexService, dropping: DroppingUpstream
) -> None:
    follower = Follower(index_service, dropping.url, "token")
    follower.start()
    try:
        time.sleep(2.5)
        state = follower.status().state
    finally:
        follower.stop()
        follower.index.close()
    # waits of 0.4, 0.8, 1.6 s (each cut by up to half): at most six tries in 2.5 s, not hundreds
    assert 2 <= dropping.connections <= 6, dropping.connections
    assert state.startswith("unreachable since"), state
    assert follower.last_error is not None and dropping.url in follower.last_error
