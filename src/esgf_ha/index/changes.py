"""The change feed a master (or a replica, for its own downstream) serves to replicas.

`GET /api/v1/changes?since=SEQ&limit=N&wait=SECONDS` answers with the entries after `since`,
oldest first. Each entry carries its exact effect (`put`: whole records, `del`: [core, id]),
so a replica applies it without running the publication logic again. The answer also says
where the log ends (`last_seq`, `last_at`), the commit time of the first entry it left out
(`next_at`, for the replica's lag), and whether `since` is beyond the log's end or names an
entry that differs from the replica's (`ahead`, `since_at`): a replica restored from a backup
newer than its master's, or following a master restored from an older backup, must bootstrap
again rather than silently diverge.

Entry payloads are spliced into the answer, not decoded and re-encoded: as JSON text in
`payload`, or with `encoding=zlib` as stored (compressed, base64 in `z`), which is what
replicas ask for: a publication of 10,000 files is one entry of a few megabytes as JSON and a
few hundred kilobytes compressed.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from esgf_ha.index.store import Store, decode_payload

MAX_LIMIT = 1000
MAX_WAIT = 60.0
# an answer stops growing past this many payload bytes (it always holds one entry at least)
MAX_BYTES = 32 * 1024 * 1024


class ChangeFeed:
    """Wakes long-polls when the index commits; safe to signal from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._lock = threading.Lock()
        self.closing = False

    def _current(self) -> asyncio.Event:
        # bound lazily: the event loop exists only once the server runs
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
        return self._event

    def notify(self, seq: int = 0) -> None:
        with self._lock:
            loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def close(self) -> None:
        """Release every waiting long-poll (the server is stopping)."""
        self.closing = True
        self.notify()

    def _wake(self) -> None:
        event = self._current()
        self._event = asyncio.Event()
        event.set()

    async def wait_beyond(self, seq_now: Callable[[], int], since: int, timeout: float) -> None:
        """Return once `seq_now()` > since or `timeout` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._current()
            if seq_now() > since or self.closing:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return


@dataclass
class ChangesQuery:
    since: int
    limit: int
    wait: float
    # payloads as stored (zlib, base64 in "z") rather than as JSON in "payload": a fraction of
    # the bytes, and a replica keeps them as they are
    compressed: bool = False


def encode_changes(store: Store, query: ChangesQuery) -> bytes:
    """The JSON answer for a changes query (see the module docstring)."""
    last_seq, last_at = store.last_change()
    since_at = store.change_at(query.since) if query.since > 0 else None
    rows = store.changes_since(query.since, query.limit + 1) if query.limit > 0 else []
    parts: list[bytes] = []
    size = 0
    next_at: float | None = None
    for seq, at, kind, payload in rows:
        if len(parts) >= query.limit or (parts and size + len(payload) > MAX_BYTES):
            next_at = float(at)
            break
        head = orjson.dumps({"seq": seq, "at": at, "kind": kind})[:-1]
        if query.compressed and payload[:1] != b"{":
            size += len(payload)
            parts.append(head + b',"z":"' + base64.b64encode(payload) + b'"}')
        else:
            raw = decode_payload(payload)
            size += len(raw)
            parts.append(head + b',"payload":' + raw + b"}")
    if query.limit == 0 and last_seq > query.since:
        following = store.changes_since(query.since, 1)
        next_at = float(following[0][1]) if following else None
    meta = orjson.dumps(
        {
            "since": query.since,
            "since_at": since_at,
            "ahead": query.since > last_seq,
            "last_seq": last_seq,
            "last_at": last_at,
            "next_at": next_at,
        }
    )
    return meta[:-1] + b',"changes":[' + b",".join(parts) + b"]}"
