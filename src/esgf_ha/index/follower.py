"""A replica's follow loop: bootstrap from a snapshot, then apply the upstream's change log.

One thread per replica long-polls `GET /api/v1/changes` on its upstream and applies each
entry in one transaction that also records the entry, under the upstream's seq, in the
replica's own change log. The replica's position is therefore its highest seq, committed
with the data it describes: a replica killed at any moment restarts where its store says
and neither loses nor repeats an entry. Downstream replicas follow it the same way.

The replica bootstraps from the upstream's snapshot when it holds nothing yet, when it meets
a "bulk" entry (bulk loads are logged without their records), and when its position does not
exist upstream (`ahead`) or names a different entry there (a master restored from an older
backup). Errors reaching the upstream are retried with capped exponential backoff; meanwhile
the replica serves what it has and reports since when the upstream is unreachable.

Lag, in seconds, is how stale the replica may be: 0 when it knows it has applied everything;
otherwise the age of the oldest upstream entry it knows of and has not applied; while the
upstream cannot be reached, at least the time since the last successful contact.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from esgf_ha.common.index_client import IndexClient, IndexUnreachable, error_text
from esgf_ha.common.retry import Backoff
from esgf_ha.index.bootstrap import SnapshotError, download_snapshot
from esgf_ha.index.errors import NotReady
from esgf_ha.index.service import IndexService
from esgf_ha.index.store import decode_payload

log = logging.getLogger("esgf_ha.index.follower")
STATE_FILE = "replication.json"
# the follower's status, for the worker processes that do not run it
STATUS_FILE = "replication.status.json"
LIMIT = 200
WAIT = 20.0
PAUSED_POLL = 2.0
LONG_POLL = httpx.Timeout(10, read=WAIT + 15)
# between failed steps: 0.4 s doubling up to 5 s, each shortened by up to half at random so
# the replicas of a restarted upstream do not all come back at once
RETRY = Backoff(first=0.4, cap=5.0)


class UpstreamError(Exception):
    """The upstream answered, but not with changes (auth, status, malformed body)."""


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FollowStatus:
    upstream: str
    state: str  # "following", "bootstrapping", "paused", "unreachable since …", "refused: …"
    seq: int
    upstream_seq: int | None
    lag: float
    paused: bool
    bootstraps: int
    last_bootstrap: str | None
    last_error: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "url": self.upstream,
            "state": self.state,
            "seq": self.upstream_seq,
            "paused": self.paused,
            "bootstraps": self.bootstraps,
            "last_bootstrap": self.last_bootstrap,
            "last_error": self.last_error,
        }


class Follower:
    def __init__(
        self,
        service: IndexService,
        upstream: str,
        token: str,
        *,
        ca: Path | None = None,
        started_at: float | None = None,
    ) -> None:
        """`ca`: the PEM bundle an HTTPS upstream's certificate is checked against (default:
        the system's roots)."""
        self.service = service
        self.upstream = upstream.rstrip("/")
        # one attempt per request: the loop below retries forever with its own backoff and
        # reports the upstream unreachable meanwhile; a long-poll may take WAIT to answer
        self.index = IndexClient(self.upstream, token=token, ca=ca, timeout=LONG_POLL)
        self.client = self.index.http  # the snapshot download streams through it
        self.state_path = service.state_dir / STATE_FILE
        saved = self._load_state()
        self.paused = bool(saved.get("paused", False))
        # before any contact in this run, the last one a previous run recorded (or none)
        self.last_contact: float | None = _float(saved.get("last_contact"))
        self._contact_saved = self.last_contact or 0.0
        self.started_at = started_at or time.time()
        # commit time of the newest entry held (kept here: lag() runs on the event loop
        # and must not wait for the store)
        self.held_at: float | None = service.store.last_change()[1]
        self.unreachable_since: float | None = None
        self.contacted = False  # in this run
        self.refused: str | None = None
        self.upstream_seq: int | None = None
        self.pending_at: float | None = None
        self.bootstrapping = False
        self.bootstraps = 0
        self.last_bootstrap: str | None = None
        self.last_error: str | None = None
        self.applied_records = 0
        self.applied_entries = 0
        self._apply_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-follower", daemon=True)

    # -- control ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop following; returns once no apply is in progress (a long-poll is abandoned)."""
        self._stop.set()
        self._wake.set()
        with self._apply_lock:
            self._thread.join(timeout=0.5)

    def pause(self) -> None:
        # taken after any apply in progress: once pause() returns, nothing more is applied
        with self._apply_lock:
            self.paused = True
            self._save_state()
        log.info("replication paused")

    def resume(self) -> None:
        with self._apply_lock:
            self.paused = False
            self._save_state()
        self._wake.set()
        log.info("replication resumed")

    # -- status -------------------------------------------------------------------------------
    def lag(self, now: float | None = None) -> float:
        since = self.stale_since()
        now = time.time() if now is None else now
        return 0.0 if since is None else max(0.0, now - since)

    @property
    def in_contact(self) -> bool:
        """The upstream has answered in this run, and neither failed nor refused us since."""
        return self.contacted and self.unreachable_since is None and self.refused is None

    def stale_since(self) -> float | None:
        """Since when this replica may miss upstream changes (None: it is current)."""
        if not self.in_contact:
            # nothing is known since the last contact (from a previous run, if none in this
            # one); never contacted at all: the data are as old as the newest entry held
            known = self.last_contact
            if known is None:
                known = self.held_at if self.held_at is not None else self.started_at
            if self.pending_at is not None:
                known = min(known, self.pending_at)
            return known
        return self.pending_at

    def state(self) -> str:
        if self.refused is not None:
            return f"refused: {self.refused}"
        if self.unreachable_since is not None:
            return f"unreachable since {_iso(self.unreachable_since)}"
        if self.bootstrapping:
            return "bootstrapping"
        if self.paused:
            return "paused"
        if not self.contacted:
            return "connecting"
        return "following"

    def status(self) -> FollowStatus:
        return FollowStatus(
            upstream=self.upstream,
            state=self.state(),
            seq=self.service.seq,
            upstream_seq=self.upstream_seq,
            lag=self.lag(),
            paused=self.paused,
            bootstraps=self.bootstraps,
            last_bootstrap=self.last_bootstrap,
            last_error=self.last_error,
        )

    @property
    def has_data(self) -> bool:
        """False until the replica holds the upstream's content (or knows it is empty)."""
        return self.service.seq > 0 or self.upstream_seq == 0

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._share_status()
                self._step()
                failures = 0
            except (IndexUnreachable, httpx.HTTPError, OSError) as exc:
                failures += 1
                text = str(exc) if isinstance(exc, IndexUnreachable) else None
                self._unreachable(text or f"{type(exc).__name__}: {exc}")
                self._backoff(failures)
            except (UpstreamError, SnapshotError) as exc:
                failures += 1
                self.last_error = str(exc)
                log.warning("replication error", extra={"error": str(exc)})
                self._backoff(failures)
            except Exception as exc:  # keep following; the next try may succeed
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("replication step failed")
                self._backoff(failures)

    def _backoff(self, failures: int) -> None:
        delay = RETRY.delay(failures - 1) * random.uniform(0.5, 1.0)
        self._wake.wait(delay)
        self._wake.clear()

    def _step(self) -> None:
        since = self.service.seq
        paused = self.paused
        # an empty replica only needs to know whether there is anything to copy
        probe = paused or (since == 0 and self.upstream_seq != 0)
        # out of contact the lag counts from the last contact: a long poll of an idle upstream
        # would let it grow past --max-lag, and the replica turn unready, while all is well
        params = {
            "since": since,
            "limit": 0 if probe else LIMIT,
            "wait": WAIT if self.in_contact and not probe else 0,
            "encoding": "zlib",
        }
        r = self.index.send("GET", "/api/v1/changes", params=params)
        if r.status_code in (401, 403):
            self.refused = f"HTTP {r.status_code} {error_text(r)}"
            raise UpstreamError(f"upstream refused the token: {self.refused}")
        if r.status_code != 200:
            raise UpstreamError(f"upstream answered HTTP {r.status_code}: {error_text(r)}")
        try:
            body = orjson.loads(r.content)
            last_seq = int(body["last_seq"])
            changes = body["changes"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError("upstream sent a malformed changes answer") from None
        self._reached()
        self.upstream_seq = last_seq
        if paused:
            # a frozen site keeps its data as they are, even if the upstream was replaced
            self.pending_at = _float(body.get("next_at")) if last_seq > since else None
            self._wake.wait(PAUSED_POLL)
            self._wake.clear()
            return
        diverged = since > 0 and (
            body.get("ahead")
            or body.get("since_at") != self.service.read(lambda store: store.change_at(since))
        )
        if diverged:
            reason = (
                f"replica position {since} is ahead of the upstream's last entry {last_seq}"
                if body.get("ahead")
                else f"entry {since} differs from the upstream's (restored upstream backup?)"
            )
            self._bootstrap(reason)
            return
        if since == 0 and last_seq > 0:
            self._bootstrap("initial copy")
            return
        for change in changes:
            if self._stop.is_set():
                return
            self.pending_at = float(change["at"])
            if change["kind"] == "bulk":
                self._bootstrap(f"upstream bulk load at seq {change['seq']}")
                return
            with self._apply_lock:
                if self.paused or self._stop.is_set():
                    return
                self._apply(change)
        applied = self.service.seq
        self.pending_at = _float(body.get("next_at")) if applied < last_seq else None

    def _apply(self, change: dict) -> None:
        seq = int(change["seq"])
        if seq != self.service.seq + 1 and self.service.seq != 0:
            # the upstream's log has no gaps; a gap means it is not the log we follow
            raise UpstreamError(f"upstream entry {seq} does not follow {self.service.seq}")
        stored: bytes | None = None
        if "z" in change:
            stored = base64.b64decode(change["z"])
            body = orjson.loads(decode_payload(stored))
        else:
            body = change["payload"]
        count = self.service.apply_upstream(
            seq, float(change["at"]), str(change["kind"]), body, stored
        )
        self.applied_records += count
        self.applied_entries += 1
        self.held_at = float(change["at"])

    def _bootstrap(self, reason: str) -> None:
        log.warning("bootstrapping from the upstream snapshot", extra={"reason": reason})
        self.bootstrapping = True
        began = time.monotonic()
        try:
            incoming = self.service.state_dir / "incoming"
            with self._apply_lock:
                seq = download_snapshot(self.client, incoming)
                self.service.replace_store(incoming)
        finally:
            self.bootstrapping = False
        self.bootstraps += 1
        self.held_at = self.service.read(lambda store: store.last_change())[1]
        self.last_bootstrap = f"{_iso(time.time())}: {reason}"
        self.pending_at = None
        log.warning(
            "bootstrapped",
            extra={"seq": seq, "reason": reason, "seconds": round(time.monotonic() - began, 3)},
        )

    def _reached(self) -> None:
        if self.unreachable_since is not None:
            log.info("upstream reachable again", extra={"upstream": self.upstream})
        self.unreachable_since = None
        self.refused = None
        self.contacted = True
        self.last_contact = time.time()
        if self.last_contact - self._contact_saved > 5:
            self._save_state()

    def _unreachable(self, error: str) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = time.time()
            log.warning("upstream unreachable", extra={"upstream": self.upstream, "error": error})
        self.last_error = error

    def _share_status(self) -> None:
        """With several worker processes, the others answer status and readiness from what
        this one writes before every step (see `FollowerView`)."""
        if not self.service.shared:
            return
        status = self.status()
        shared = {
            **status.as_json(),
            "stale_since": self.stale_since(),
            "has_data": self.has_data,
            "applied_records": self.applied_records,
            "applied_entries": self.applied_entries,
        }
        path = self.service.state_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(shared))
        tmp.replace(path)

    # -- persisted operator state -------------------------------------------------------------
    def _load_state(self) -> dict:
        try:
            saved = orjson.loads(self.state_path.read_bytes())
            return saved if isinstance(saved, dict) else {}
        except (OSError, orjson.JSONDecodeError):
            return {}

    def _save_state(self) -> None:
        self._contact_saved = self.last_contact or 0.0
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"paused": self.paused, "last_contact": self.last_contact}))
        tmp.replace(self.state_path)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class FollowerView:
    """The follower as the worker processes that do not run it see it: its status as worker 0
    last wrote it (re-read at most every `REFRESH` seconds). Pause and resume need the
    follower itself: here they ask the caller to try again (another connection may reach it).
    A status that stops being written (worker 0 died) makes the lag grow, as it should."""

    REFRESH = 0.25

    def __init__(self, service: IndexService, upstream: str) -> None:
        self.service = service
        self.upstream = upstream.rstrip("/")
        self.path = service.state_dir / STATUS_FILE
        self.started_at = time.time()
        self._read_at = 0.0
        self._shared: dict[str, object] = {}

    def _status(self) -> dict[str, object]:
        now = time.monotonic()
        if now - self._read_at > self.REFRESH:
            self._read_at = now
            try:
                loaded = orjson.loads(self.path.read_bytes())
                self._shared = loaded if isinstance(loaded, dict) else {}
            except (OSError, orjson.JSONDecodeError):
                self._shared = {}
        return self._shared

    def lag(self, now: float | None = None) -> float:
        shared = self._status()
        since = _float(shared.get("stale_since")) if shared else self.started_at
        now = time.time() if now is None else now
        return 0.0 if since is None else max(0.0, now - since)

    @property
    def applied_records(self) -> int:
        return int(self._status().get("applied_records", 0))  # type: ignore[call-overload]

    @property
    def applied_entries(self) -> int:
        return int(self._status().get("applied_entries", 0))  # type: ignore[call-overload]

    @property
    def bootstraps(self) -> int:
        return int(self._status().get("bootstraps", 0))  # type: ignore[call-overload]

    @property
    def has_data(self) -> bool:
        return bool(self._status().get("has_data", False)) or self.service.seq > 0

    def status(self) -> FollowStatus:
        shared = self._status()
        seq = shared.get("seq")
        return FollowStatus(
            upstream=self.upstream,
            state=str(shared.get("state", "connecting")),
            seq=self.service.seq,
            upstream_seq=seq if isinstance(seq, int) else None,
            lag=self.lag(),
            paused=bool(shared.get("paused", False)),
            bootstraps=self.bootstraps,
            last_bootstrap=_str(shared.get("last_bootstrap")),
            last_error=_str(shared.get("last_error")),
        )

    def start(self) -> None:
        """Nothing runs here: worker 0 follows."""

    def stop(self) -> None:
        """Nothing runs here: worker 0 follows."""

    def pause(self) -> None:
        raise NotReady("this worker does not run the replica follower; send the request again")

    def resume(self) -> None:
        self.pause()


# what the HTTP layer reads: the follower itself, or worker 0's as another worker sees it
AnyFollower = Follower | FollowerView


def _str(value: object) -> str | None:
    return None if value is None else str(value)
