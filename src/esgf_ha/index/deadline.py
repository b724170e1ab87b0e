"""The time limit of one search, enforced where the time goes.

The engine calls `check()` between its steps and inside its loops over dictionary values;
SQLite statements are stopped by a progress handler on every read-only connection
(`sqlite_progress`), which interrupts the statement once the deadline of the thread running
it has passed. The deadline is per thread because each search runs in one worker thread from
start to end, and read connections are per thread too.

A runaway query therefore gives its worker back at the limit instead of holding it for as
long as the query takes (wildcard text queries over huge values took 12–15 s, issue 12).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from esgf_ha.index.errors import SearchTimeout

# SQLite virtual-machine instructions between two looks at the clock: about a millisecond
SQLITE_PROGRESS_STEPS = 20_000

_local = threading.local()


@contextmanager
def limit(seconds: float | None) -> Iterator[None]:
    """Run the body with a time limit (None or 0: none); SQLite interrupts become timeouts."""
    previous = getattr(_local, "limit", None)
    _local.limit = (time.monotonic() + seconds, seconds) if seconds else None
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc) and expired():
            raise _timeout() from None
        raise
    finally:
        _local.limit = previous


def expired() -> bool:
    current = getattr(_local, "limit", None)
    return current is not None and time.monotonic() > current[0]


def check() -> None:
    """Raise SearchTimeout when the current thread's search is past its limit."""
    if expired():
        raise _timeout()


def sqlite_progress() -> int:
    """SQLite progress handler: non-zero stops the running statement."""
    return 1 if expired() else 0


def _timeout() -> SearchTimeout:
    current = getattr(_local, "limit", None)
    seconds = current[1] if current else 0.0
    return SearchTimeout(
        f"the search ran longer than its time limit of {seconds:g} s and was stopped: "
        "narrow it (fewer or longer wildcard patterns, more constraints) or retry later"
    )
