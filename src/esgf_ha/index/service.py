"""IndexService: the store, the facet index and the engine behind one object.

The HTTP layer (`app.py`) calls only this. Writes commit to SQLite and update the in-memory
index under one exclusive lock, so a search never sees half of a publication batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson

from esgf_ha.common.rwlock import RWLock
from esgf_ha.index import deadline, publish, snapshot
from esgf_ha.index.binding import Binding
from esgf_ha.index.changes import ChangesQuery, encode_changes
from esgf_ha.index.columns import CoreIndex, PendingAdd
from esgf_ha.index.engine import Engine, SearchResult
from esgf_ha.index.facets import FacetProfile
from esgf_ha.index.params import SearchRequest
from esgf_ha.index.store import Prepared, SlotDelta, Store, Transaction
from esgf_ha.records.schema import CORES, normalize_record

log = logging.getLogger("esgf_ha.index")
T = TypeVar("T")
# (lo, hi or None for no bound, whether to list every id instead of one digest)
DigestRange = tuple[str, str | None, bool]
SNAPSHOT_DIR = "facets.snapshot"
STORE_FILE = "index.sqlite3"


@dataclass
class IndexStats:
    """Counts for readiness and metrics, taken without touching SQLite."""

    records: dict[str, int]
    seq: int
    opened_in: float


class IndexService:
    """The index node without HTTP: the durable store, the in-memory facet index over it,
    and the lock that keeps a search from seeing one without the other. The HTTP layer and
    the replication follower talk to the store only through here."""

    def __init__(
        self,
        state_dir: Path,
        store: Store,
        cores: dict[str, CoreIndex],
        opened_in: float,
        from_snapshot: bool,
        facets: FacetProfile | None = None,
    ) -> None:
        """Use `open`, which loads or rebuilds the facet index; this only wires the parts."""
        self.state_dir = state_dir
        self.store = store
        self.cores = cores
        self.facets = facets if facets is not None else FacetProfile.builtin()
        self.engine = Engine(store, cores, self.facets)
        self.lock = RWLock()
        self.opened_in = opened_in
        self.seq = store.last_seq()
        self.from_snapshot = from_snapshot
        self._saved_seq = self.seq if from_snapshot else -1
        # called with the new seq after every commit (long-polls of downstream replicas)
        self.listeners: list[Callable[[int], None]] = []
        # several worker processes serve this store (see `attach`): each catches up with the
        # others' commits before a search and in the background (`start_sync`)
        self.shared = False
        self.worker: int | None = None
        self._sync_lock = threading.Lock()
        self._stale = False
        self._store_ino = _inode(store.path)
        self._stop_sync = threading.Event()
        self._sync_thread: threading.Thread | None = None

    @classmethod
    def open(
        cls, state_dir: Path, *, durable: bool = True, facets: FacetProfile | None = None
    ) -> IndexService:
        """Open (or create) the index in a state directory and load its facet index."""
        began = time.monotonic()
        state_dir.mkdir(parents=True, exist_ok=True)
        store = Store(state_dir / STORE_FILE, durable=durable)
        seq, max_slots = store.last_seq(), store.max_slots()
        loaded = snapshot.load(state_dir / SNAPSHOT_DIR, seq, max_slots)
        cores = loaded if loaded is not None else build_cores(store)
        opened = time.monotonic() - began
        log.info(
            "index opened",
            extra={
                "records": {c: cores[c].live_count for c in CORES},
                "seconds": round(opened, 3),
                "from_snapshot": loaded is not None,
            },
        )
        return cls(state_dir, store, cores, opened, from_snapshot=loaded is not None, facets=facets)

    def save_snapshot(self) -> None:
        """Write the facet index next to the store (skipped when nothing changed)."""
        with self.lock.read():
            seq = self.store.last_seq()
            if seq == self._saved_seq:
                return
            began = time.monotonic()
            snapshot.save(self.state_dir / SNAPSHOT_DIR, self.cores, seq, self.store.max_slots())
            self._saved_seq = seq
        log.info(
            "facet snapshot saved",
            extra={"seq": seq, "seconds": round(time.monotonic() - began, 3)},
        )

    def replace_store(self, incoming: Path) -> None:
        """Swap in a complete copy of an index: `incoming/index.sqlite3` and, if present and
        matching, its saved facet index `incoming/facets` (a replica's snapshot bootstrap).

        The facet index is loaded (or rebuilt) before taking the write lock, so searches go
        on against the old data until the swap, which is a rename and a reopen.
        """
        began = time.monotonic()
        staged = Store(incoming / STORE_FILE, durable=self.store.durable)
        try:
            seq, max_slots = staged.last_seq(), staged.max_slots()
            cores = snapshot.load(incoming / "facets", seq, max_slots)
            shipped = cores is not None
            if cores is None:
                cores = build_cores(staged)
        finally:
            staged.close()
        target = self.state_dir / STORE_FILE
        with self.lock.write():
            self.store.close()
            for suffix in ("-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
            shutil.rmtree(self.state_dir / SNAPSHOT_DIR, ignore_errors=True)
            (incoming / STORE_FILE).replace(target)
            if shipped:
                # kept as this store's own facet snapshot: a restart before any change is fast
                (incoming / "facets").replace(self.state_dir / SNAPSHOT_DIR)
            self.store = Store(target, durable=self.store.durable)
            self.cores = cores
            self.engine = Engine(self.store, cores, self.facets)
            self.seq = self.store.last_seq()
            self._saved_seq = self.seq if shipped else -1
            self._store_ino = _inode(target)
        shutil.rmtree(incoming, ignore_errors=True)
        log.info(
            "store replaced",
            extra={
                "seq": self.seq,
                "facets_shipped": shipped,
                "seconds": round(time.monotonic() - began, 3),
            },
        )
        self._notify()

    def apply_upstream(
        self,
        seq: int,
        at: float,
        kind: str,
        body: dict[str, object],
        stored: bytes | None = None,
    ) -> int:
        """Apply one upstream change-log entry in one transaction; the number of records.

        The entry is logged under the upstream's seq and time, so this index's position is
        the upstream's, and downstream replicas can follow this one.
        """
        began = time.perf_counter()
        by_core: dict[str, list[dict[str, object]]] = {}
        for core, record in body.get("put", ()):  # type: ignore[attr-defined]
            by_core.setdefault(str(core), []).append(record)
        # the stored form of every record is computed before taking the write lock
        puts = [Prepared(core, records) for core, records in by_core.items()]
        dels = [[str(core), str(i)] for core, i in body.get("del", ())]  # type: ignore[attr-defined]
        # kept as the upstream stored it when it came so (compressed); compressing a decoded
        # payload again would slow every apply, so such payloads are kept as JSON
        payload = stored if stored is not None else orjson.dumps(body)

        def operation(txn: Transaction) -> None:
            txn.apply_effect(puts, dels)
            txn.upstream = (seq, at, kind, payload)

        self._locked_write(operation)
        count = sum(len(p.records) for p in puts) + len(dels)
        log.debug(
            "applied upstream entry",
            extra={"seq": seq, "records": count, "seconds": round(time.perf_counter() - began, 4)},
        )
        return count

    def _notify(self) -> None:
        for listener in self.listeners:
            listener(self.seq)

    def close(self) -> None:
        """Save the facet snapshot, so the next start skips the rebuild, then close the store.

        A worker of several saves nothing: the others may be writing still, and the snapshot
        must match the store exactly; the supervisor saves once they have all stopped."""
        self.stop_sync()
        if not self.shared:
            try:
                self.save_snapshot()
            except OSError as exc:
                log.warning("could not save the facet snapshot: %s", exc)
        self.store.close()

    # -- several worker processes on one store --------------------------------------------------
    def detach(self) -> None:
        """Close the store before the process forks workers (no SQLite handle may cross a
        fork); the facet index stays, shared with the workers until they change it."""
        self.store.close()

    def attach(self, worker: int | None) -> None:
        """Reopen the store after a fork and catch up with what was committed since the facet
        index was loaded: as worker number `worker`, or (None) as the supervisor after every
        worker stopped, which then saves the snapshot."""
        self.store = Store(self.state_dir / STORE_FILE, durable=self.store.durable)
        self.engine = Engine(self.store, self.cores, self.facets)
        self._store_ino = _inode(self.store.path)
        self.worker = worker
        self.shared = True
        self.catch_up()
        if worker is None:
            self.shared = False

    def start_sync(self, interval: float = 0.05) -> None:
        """Catch up with the other workers every `interval` seconds, so long-polls of
        downstream replicas wake on any worker's commit."""

        def run() -> None:
            while not self._stop_sync.wait(interval):
                try:
                    self.catch_up()
                except Exception:  # noqa: BLE001 - the next round retries; searches catch up too
                    log.exception("catching up with the other workers failed")

        self._sync_thread = threading.Thread(target=run, name="worker-sync", daemon=True)
        self._sync_thread.start()

    def stop_sync(self) -> None:
        """End the catch-up thread (a stopping worker)."""
        self._stop_sync.set()
        if self._sync_thread is not None:
            self._sync_thread.join()
            self._sync_thread = None

    def catch_up(self) -> None:
        """Apply what other processes committed since this one last looked (shared only):
        whole entries at a time, under the write lock, so no search sees half a batch."""
        if not self.shared:
            return
        if _inode(self.state_dir / STORE_FILE) != self._store_ino:
            self._reopen()
        if not self._stale and self.store.last_seq() <= self.seq:
            return
        with self._sync_lock:
            while True:
                if self._stale:
                    self._rebuild()
                delta = self.store.delta_since(self.seq)
                if not delta.complete:
                    self._stale = True
                    continue
                prepared = self._prepare_delta(delta)  # before the lock, as for local writes
                with self.lock.write():
                    # a local write may have moved on meanwhile: read again from there
                    if delta.base != self.seq:
                        continue
                    changed = self._apply_delta(delta, prepared)
                break
        if changed:
            self._notify()

    def _prepare_delta(self, delta: SlotDelta) -> list[PendingAdd | None]:
        return [
            self.cores[core].prepare_add([a[0] for a in added], [a[1] for a in added])
            if added
            else None
            for _, core, _, added in delta.entries
        ]

    def _apply_delta(
        self, delta: SlotDelta, prepared: list[PendingAdd | None] | None = None
    ) -> bool:
        """Apply another process's entries (caller holds the write lock); whether any."""
        if prepared is None:
            prepared = self._prepare_delta(delta)
        for (_, core, removed, _), pending in zip(delta.entries, prepared, strict=True):
            if removed:
                self.cores[core].remove(removed)
            if pending is not None:
                self.cores[core].apply_add(pending)
        moved = delta.seq != self.seq
        self.seq = delta.seq
        return moved

    def _rebuild(self) -> None:
        """Rebuild the facet index from one snapshot of the store (this process fell behind
        the slot log); later commits are applied from the slot log afterwards."""
        began = time.monotonic()
        with self.store.read_snapshot() as conn:
            seq = int(conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
            cores = build_cores(self.store, conn)
        with self.lock.write():
            self.cores = cores
            self.engine = Engine(self.store, cores, self.facets)
            self.seq = seq
            self._stale = False
        log.info(
            "facet index rebuilt", extra={"seq": seq, "seconds": round(time.monotonic() - began, 3)}
        )

    def _reopen(self) -> None:
        """Another worker swapped in a new store (a replica's bootstrap): open it and load
        its facet index like a start does."""
        path = self.state_dir / STORE_FILE
        store = Store(path, durable=self.store.durable)
        seq, max_slots = store.last_seq(), store.max_slots()
        cores = snapshot.load(self.state_dir / SNAPSHOT_DIR, seq, max_slots)
        if cores is None:
            with store.read_snapshot() as conn:
                seq = int(conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
                cores = build_cores(store, conn)
        with self.lock.write():
            self.store.close()
            self.store = store
            self.cores = cores
            self.engine = Engine(store, cores, self.facets)
            self.seq = seq
            self._store_ino = _inode(path)
            self._stale = False
        log.info("store reopened", extra={"seq": seq})
        self._notify()

    # -- reads --------------------------------------------------------------------------------
    def search(
        self, req: SearchRequest, timeout: float | None = None
    ) -> tuple[SearchResult, list[dict[str, object]]]:
        """Run a search; past `timeout` seconds (None: no limit) it stops with SearchTimeout."""
        self.catch_up()
        with self.lock.read(), deadline.limit(timeout):
            result = self.engine.search(req)
            docs = self.store.fetch(req.type, result.slots)
        return result, [docs[s] for s in result.slots if s in docs]

    def read(self, operation: Callable[[Store], T]) -> T:
        """Run a read on the store while it cannot be swapped out (snapshot bootstrap)."""
        with self.lock.read():
            return operation(self.store)

    def digests(self, core: str, ranges: list[DigestRange]) -> list[dict[str, object]]:
        """Per id range, a (count, sha256) digest or the (id, hash) listing, for a replica to
        find what differs; under the read lock, as a bootstrap may swap the store."""
        out: list[dict[str, object]] = []
        with self.lock.read():
            for low, high, listing in ranges:
                if listing:
                    ids = list(self.store.hashes(core, low, high))
                    out.append({"lo": low, "hi": high, "ids": ids})
                else:
                    count, sha = self.store.digest(core, low, high)
                    out.append({"lo": low, "hi": high, "count": count, "sha256": sha})
        return out

    def changes(self, query: ChangesQuery) -> bytes:
        """The change-feed page a replica asked for, encoded (see `changes.encode_changes`)."""
        with self.lock.read():
            return encode_changes(self.store, query)

    def check_readable(self) -> int:
        """The last change-log sequence, read from the store itself: raises when it cannot
        be read (what readiness means for an index)."""
        with self.lock.read():
            return self.store.last_seq()

    def split_points(self, core: str, low: str, high: str | None, parts: int) -> list[str]:
        """Ids cutting [low, high) into `parts` ranges of about equal size (see Store)."""
        with self.lock.read():
            return self.store.split_points(core, low, high, parts)

    def known_fields(self) -> set[str]:
        """Names a search may constrain: the configured facets, and every field a record has."""
        names: set[str] = set(self.facets.names())
        for core in self.cores.values():
            names |= core.field_names
        return names

    def stats(self) -> IndexStats:
        """Live record counts per core, from the facet index (cheap enough for every probe)."""
        return IndexStats({c: self.cores[c].live_count for c in CORES}, self.seq, self.opened_in)

    # -- writes -------------------------------------------------------------------------------
    # `binding`: the data nodes (and projects) the writer may touch; None for operators
    def publish_batch(self, batch: object, binding: Binding | None = None) -> publish.Outcome:
        """Publish a whole batch in one transaction: all of it is searchable, or none."""
        return self._locked_write(lambda txn: publish.publish_batch(txn, batch, binding))

    def publish_record(
        self, record: dict[str, object], binding: Binding | None = None
    ) -> publish.Outcome:
        """Publish one record, as esgcet's /ws/publish sends them."""
        return self._locked_write(lambda txn: publish.publish_record(txn, record, binding))

    def retract(self, ids: list[str], binding: Binding | None = None) -> publish.Outcome:
        """Retract dataset versions: their files go, the dataset record stays, marked
        retracted and not latest, so users can still learn why their data went."""
        return self._locked_write(lambda txn: publish.retract(txn, ids, binding))

    def delete(self, ids: list[str], binding: Binding | None = None) -> publish.Outcome:
        """Remove datasets and their files; replicas learn of it from the change feed."""
        return self._locked_write(lambda txn: publish.delete(txn, ids, binding))

    def update(
        self, core: str, action: str, updates: list, binding: Binding | None = None
    ) -> publish.Outcome:
        """Apply esg-search /ws/update field changes to the records a query selects."""
        return self._locked_write(lambda txn: publish.update(txn, core, action, updates, binding))

    def _locked_write(self, operation: Callable[[Transaction], T]) -> T:
        """Run a write; its commit and the facet-index update are one step for searches.

        The SQLite work runs without the search lock (readers see only committed data);
        searches wait only for the commit and the in-memory update, so a large batch does
        not hold them up for the time it takes to write it.
        """

        def own(txn: Transaction) -> Callable[[], None]:
            # the per-record work happens here, before the search lock is taken
            pending = []
            for core in CORES:
                added = [(slot, record) for c, slot, record in txn.added if c == core]
                if added:
                    index = self.cores[core]
                    pending.append(
                        (index, index.prepare_add([a[0] for a in added], [a[1] for a in added]))
                    )

            removed: dict[str, list[int]] = {}
            for core, slot in txn.removed:
                removed.setdefault(core, []).append(slot)

            def apply() -> None:
                for core, slots in removed.items():
                    self.cores[core].remove(slots)
                for index, prepared in pending:
                    index.apply_add(prepared)

            return apply

        with self.store.transaction(self._commit_hook(own)) as txn:
            result = operation(txn)
        self._after_write()
        return result

    def _commit_hook(
        self, own: Callable[[Transaction], Callable[[], None]]
    ) -> Callable[[Transaction, Callable[[], None]], None]:
        """The commit of a write and its facet-index update as one step for searches.

        `own(txn)` prepares the facet-index update without the search lock (other writers
        wait: the store's write lock is held) and returns the step that applies it, which
        runs with the commit under the lock. With other workers on the store, what they
        committed before this transaction (it holds SQLite's write lock, so that is all of
        it) is applied first, in seq order."""

        def commit(txn: Transaction, do_commit: Callable[[], None]) -> None:
            apply = own(txn)
            with self.lock.write():
                if self.shared and txn.seq is not None and not self._stale:
                    delta = SlotDelta(txn.conn, self.seq, upto=txn.seq)
                    if delta.complete:
                        self._apply_delta(delta)
                    else:
                        self._stale = True  # rebuilt after the commit (`_after_write`)
                do_commit()
                apply()
                if not self.shared:
                    self.seq = self.store.last_seq()
                elif txn.seq is not None:
                    self.seq = txn.seq

        return commit

    def _after_write(self) -> None:
        if self._stale:
            self.catch_up()
        self._notify()

    def bulk_load(
        self, datasets: Iterable[dict[str, object]], files: Iterable[dict[str, object]] = ()
    ) -> dict[str, int]:
        """Load complete records fast (benchmarks, sample data): no latest/409 logic."""
        counts = {}
        with self.store.bulk_mode():
            for core, records in (("Dataset", datasets), ("File", files)):
                counts[core] = 0
                for chunk in _chunks(records, 50_000):
                    normalized = [normalize_record(r) for r in chunk]

                    # same lock order as every write: the store's, then the search lock
                    def own(
                        txn: Transaction,
                        core: str = core,
                        normalized: list[dict[str, object]] = normalized,
                    ) -> Callable[[], None]:
                        index = self.cores[core]
                        pending = index.prepare_add(txn.bulk_slots, normalized)
                        return lambda: index.apply_add(pending)

                    self.store.bulk_insert(core, normalized, self._commit_hook(own))
                    self._after_write()
                    counts[core] += len(normalized)
        self.save_snapshot()
        return counts


def _inode(path: Path) -> int:
    """The store file's identity: a snapshot bootstrap renames a new file over it."""
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1


def build_cores(store: Store, conn: sqlite3.Connection | None = None) -> dict[str, CoreIndex]:
    """The facet index of every core, read from the store (on `conn`, in its snapshot)."""
    cores = {core: CoreIndex(core) for core in CORES}
    for core in CORES:
        index = cores[core]
        for chunk in _chunks(store.scan(core, conn=conn), 50_000):
            index.add_many([slot for slot, _ in chunk], [record for _, record in chunk])
    return cores


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
