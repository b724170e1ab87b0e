"""The durable record store: SQLite in WAL mode, one writer, read-only readers.

One table per core holds every record as JSON at a slot (its rowid, never reused), with the
identifier fields as indexed columns; an FTS5 table holds title, description and identifier
words for free-text search; `changes` is the ordered change log written in the same transaction
as the records it describes, which replicas follow.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson

from esgf_ha.index import deadline

log = logging.getLogger("esgf_ha.index")

TABLES = {"Dataset": "datasets", "File": "files", "Aggregation": "aggregations"}
# Identifier fields kept as columns (first value for lists). Only the ones searched often are
# indexed per core: an index on every identifier doubled the size of a 10M-file store.
KEY_COLUMNS = ("id", "dataset_id", "master_id", "instance_id", "title", "tracking_id", "checksum")
INDEXED_KEYS = {
    "datasets": ("master_id", "instance_id"),
    "files": ("dataset_id", "tracking_id"),
    "aggregations": ("dataset_id",),
}
# Single-valued identifiers live only in their column, not again in the stored document.
SCALAR_KEYS = ("id", "dataset_id", "master_id", "instance_id", "title")
DOC_COLUMNS = "slot, id, dataset_id, master_id, instance_id, title, doc"
# 2: identifiers in the free-text body (stores of version 1 have theirs rebuilt on open)
SCHEMA_VERSION = 2
PAGE_SIZE = 16384
# the WAL size at which a write copies it back into the store (SQLite's default: 1000 pages)
CHECKPOINT_BYTES = 1000 * PAGE_SIZE


def pack(record: dict[str, object]) -> bytes:
    """The stored form of a record: JSON without the scalar identifiers, compressed."""
    rest = {k: v for k, v in record.items() if k not in SCALAR_KEYS}
    return zlib.compress(orjson.dumps(rest), 1)


def unpack(row: tuple) -> tuple[int, dict[str, object]]:
    """(slot, record) from a row selected as DOC_COLUMNS."""
    slot, *keys, blob = row
    record: dict[str, object] = {
        name: value for name, value in zip(SCALAR_KEYS, keys, strict=True) if value is not None
    }
    record.update(orjson.loads(zlib.decompress(blob)))
    return slot, record


def _key(record: dict[str, object], name: str) -> str | None:
    value = record.get(name)
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


# Identifiers free text finds, as esg-search's catch-all field does (a versioned dataset id as
# `query=` is a common habit). Facet values are searched in memory (columns.text_codes); the
# checksum and tracking_id are not worded (one unique word each would double the word index of a
# large file core): they are searched by name.
TEXT_IDS = ("id", "dataset_id", "instance_id", "master_id")


def _text(record: dict[str, object]) -> str:
    """The free-text body of a record: its title, description and identifiers. An identifier
    whose text another part already holds (`instance_id` inside `id`, `master_id` inside a
    CMIP6 title) adds no words a phrase could need, so it is left out."""
    parts = [str(record.get("title", ""))]
    desc = record.get("description")
    if isinstance(desc, list):
        parts.extend(str(d) for d in desc)
    elif isinstance(desc, str):
        parts.append(desc)
    held = " ".join(parts).lower()
    for name in TEXT_IDS:
        value = _key(record, name)
        if value and value.lower() not in held:
            parts.append(value)
            held += " " + value.lower()
    return " ".join(parts)


def _schema(table: str) -> str:
    # `id` is unique through a separate index (not an inline UNIQUE) so a bulk load can drop
    # it and build it once at the end; see Store.bulk_mode
    cols = ", ".join(f"{c} TEXT" for c in KEY_COLUMNS[1:])
    return f"""
    CREATE TABLE IF NOT EXISTS {table} (
        slot INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL, {cols}, doc BLOB NOT NULL);
    CREATE VIRTUAL TABLE IF NOT EXISTS {table}_text USING fts5(body, tokenize='unicode61');
    """


def _index_statements(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    """The secondary indexes a table must have, by name."""
    wanted = {
        f"{table}_{c}": f"CREATE INDEX IF NOT EXISTS {table}_{c} ON {table}({c})"
        for c in INDEXED_KEYS[table]
    }
    inline_unique = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='index' AND name=?",
        (f"sqlite_autoindex_{table}_1",),
    ).fetchone()
    if not inline_unique:  # stores made before the id index was separate keep their own
        wanted[f"{table}_id"] = f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_id ON {table}(id)"
    return wanted


def encode_payload(payload: dict[str, object]) -> bytes:
    """Change-log payloads holding records are stored compressed (they repeat many keys)."""
    raw = orjson.dumps(payload)
    return zlib.compress(raw, 1) if len(raw) > 512 else raw


def decode_payload(blob: bytes) -> bytes:
    """The JSON text of a stored payload (older entries and small ones are plain JSON)."""
    return blob if blob[:1] == b"{" else zlib.decompress(blob)


def _next_slot(conn: sqlite3.Connection, table: str) -> int:
    start = (conn.execute(f"SELECT max(slot) FROM {table}").fetchone()[0] or 0) + 1
    seq_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return max(start, (seq_row[0] if seq_row else 0) + 1)


class Prepared:
    """Records of one core with their stored columns computed (outside any lock)."""

    def __init__(self, core: str, records: Iterable[dict[str, object]]) -> None:
        self.core = core
        self.records = list(records)
        self.rows = [[_key(r, c) for c in KEY_COLUMNS] + [pack(r)] for r in self.records]
        self.texts = [_text(r) for r in self.records]


def _insert_many(conn: sqlite3.Connection, prepared: Prepared) -> list[int]:
    """Insert records at fresh consecutive slots with two statements (fast bulk path)."""
    table = TABLES[prepared.core]
    start = _next_slot(conn, table)
    slots = list(range(start, start + len(prepared.rows)))
    conn.executemany(
        f"INSERT INTO {table} (slot, {', '.join(KEY_COLUMNS)}, doc) VALUES (?,?,?,?,?,?,?,?,?)",
        [[slot, *row] for slot, row in zip(slots, prepared.rows, strict=True)],
    )
    conn.executemany(
        f"INSERT INTO {table}_text (rowid, body) VALUES (?, ?)",
        list(zip(slots, prepared.texts, strict=True)),
    )
    return slots


class Transaction:
    """What the publication logic may do inside one write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.added: list[tuple[str, int, dict[str, object]]] = []
        self.removed: list[tuple[str, int]] = []
        # ids of removed records, for the change log: slots differ between stores
        self.removed_ids: list[tuple[str, str]] = []
        self.changes: list[tuple[str, dict[str, object]]] = []
        # a replica applying an upstream entry: (seq, at, kind, payload) logged verbatim
        self.upstream: tuple[int, float, str, bytes] | None = None
        self.bulk_slots: list[int] = []
        self.bulk_core = ""
        # the change-log seq this transaction commits under (None: it changed nothing)
        self.seq: int | None = None

    def get(self, core: str, record_id: str) -> tuple[int, dict[str, object]] | None:
        row = self.conn.execute(
            f"SELECT {DOC_COLUMNS} FROM {TABLES[core]} WHERE id = ?", (record_id,)
        ).fetchone()
        return None if row is None else unpack(row)

    def find(self, core: str, field: str, value: str) -> list[tuple[int, dict[str, object]]]:
        if field not in KEY_COLUMNS:
            raise ValueError(f"{field} is not an indexed field")
        rows = self.conn.execute(
            f"SELECT {DOC_COLUMNS} FROM {TABLES[core]} WHERE {field} = ?", (value,)
        ).fetchall()
        return [unpack(row) for row in rows]

    def scan(self, core: str) -> Iterator[tuple[int, dict[str, object]]]:
        for row in self.conn.execute(f"SELECT {DOC_COLUMNS} FROM {TABLES[core]}"):
            yield unpack(row)

    def insert(self, core: str, record: dict[str, object]) -> int:
        table = TABLES[core]
        cur = self.conn.execute(
            f"INSERT INTO {table} ({', '.join(KEY_COLUMNS)}, doc) VALUES (?,?,?,?,?,?,?,?)",
            [_key(record, c) for c in KEY_COLUMNS] + [pack(record)],
        )
        slot = int(cur.lastrowid or 0)
        self.conn.execute(
            f"INSERT INTO {table}_text (rowid, body) VALUES (?, ?)", (slot, _text(record))
        )
        self.added.append((core, slot, record))
        return slot

    def slot_of(self, core: str, record_id: str) -> int | None:
        row = self.conn.execute(
            f"SELECT slot FROM {TABLES[core]} WHERE id = ?", (record_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def delete(self, core: str, slot: int) -> None:
        table = TABLES[core]
        row = self.conn.execute(f"DELETE FROM {table} WHERE slot = ? RETURNING id", (slot,))
        for (record_id,) in row.fetchall():
            self.removed_ids.append((core, record_id))
        self.conn.execute(f"DELETE FROM {table}_text WHERE rowid = ?", (slot,))
        self.removed.append((core, slot))
        self.added = [a for a in self.added if not (a[0] == core and a[1] == slot)]

    def replace(self, core: str, slot: int, record: dict[str, object]) -> int:
        self.delete(core, slot)
        return self.insert(core, record)

    def log(self, kind: str, payload: dict[str, object]) -> None:
        self.changes.append((kind, payload))

    def apply_effect(self, puts: Sequence[Prepared], dels: Sequence[Sequence[str]]) -> None:
        """Replay a change-log entry's physical effect: remove `dels` and every record `puts`
        replaces, then insert `puts`."""
        doomed: dict[str, list[str]] = {}
        for core, record_id in dels:
            doomed.setdefault(core, []).append(record_id)
        for prepared in puts:
            doomed.setdefault(prepared.core, []).extend(str(r["id"]) for r in prepared.records)
        for core, record_ids in doomed.items():
            table = TABLES[core]
            found = self.conn.execute(
                f"SELECT slot, id FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(record_ids),),
            ).fetchall()
            if not found:
                continue
            self.conn.executemany(f"DELETE FROM {table} WHERE slot = ?", [(s,) for s, _ in found])
            self.conn.executemany(
                f"DELETE FROM {table}_text WHERE rowid = ?", [(s,) for s, _ in found]
            )
            self.removed.extend((core, slot) for slot, _ in found)
            self.removed_ids.extend((core, record_id) for _, record_id in found)
        for prepared in puts:
            slots = _insert_many(self.conn, prepared)
            self.added.extend(
                (prepared.core, slot, record)
                for slot, record in zip(slots, prepared.records, strict=True)
            )

    def entry(self) -> tuple[str, bytes] | None:
        """The change-log entry of this transaction: its summary and its exact effect."""
        if not self.changes and not self.added and not self.removed_ids:
            return None
        kind = self.changes[0][0] if self.changes else "write"
        summary: dict[str, object] = {}
        for _, payload in self.changes:
            summary.update(payload)
        put_ids = {(core, str(record["id"])) for core, _, record in self.added}
        payload = {
            **summary,
            "put": [[core, record] for core, _, record in self.added],
            "del": [[c, i] for c, i in dict.fromkeys(self.removed_ids) if (c, i) not in put_ids],
        }
        return kind, encode_payload(payload)


# How many change-log entries the slot log keeps: a worker further behind rebuilds its facet
# index from the store instead (workers catch up every ~50 ms, so this is hours of writes).
SLOT_LOG_KEEP = 10_000


def _ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted slots as inclusive (lo, hi) runs: inserts take consecutive slots, so a batch of
    thousands of records is one row of the slot log."""
    out: list[tuple[int, int]] = []
    for slot in sorted(set(slots)):
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out


def _log_entry(txn: Transaction) -> None:
    """Append the transaction's change-log entry and the slots it changed (for the other
    worker processes of this store, see `SlotDelta`), inside the transaction."""
    conn = txn.conn
    if txn.upstream is not None:
        conn.execute("INSERT INTO changes VALUES (?, ?, ?, ?)", txn.upstream)
        txn.seq = txn.upstream[0]
    else:
        entry = txn.entry()
        if entry is None:
            return
        cur = conn.execute(
            "INSERT INTO changes (at, kind, payload) VALUES (?, ?, ?)", (time.time(), *entry)
        )
        txn.seq = int(cur.lastrowid or 0)
    rows: list[tuple[int, str, int, int, int]] = []
    for core in TABLES:
        removed = [slot for c, slot in txn.removed if c == core]
        added = [slot for c, slot, _ in txn.added if c == core]
        if txn.bulk_core == core:
            added.extend(txn.bulk_slots)
        rows.extend((txn.seq, core, lo, hi, 0) for lo, hi in _ranges(removed))
        rows.extend((txn.seq, core, lo, hi, 1) for lo, hi in _ranges(added))
    conn.executemany("INSERT INTO slot_log VALUES (?, ?, ?, ?, ?)", rows)
    if txn.seq % 256 == 0:
        floor = txn.seq - SLOT_LOG_KEEP
        conn.execute("DELETE FROM slot_log WHERE seq <= ?", (floor,))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('slot_log_floor', ?)", (str(floor),))


class SlotDelta:
    """What other writers committed after `base`, read in one snapshot: per entry (in seq
    order) the slots removed and the records added, each by core. `complete` is False when
    the slot log no longer reaches back to `base` (the reader must rebuild instead)."""

    def __init__(self, conn: sqlite3.Connection, base: int, upto: int | None = None) -> None:
        self.base = base
        floor_row = conn.execute("SELECT value FROM meta WHERE key='slot_log_floor'").fetchone()
        self.complete = floor_row is None or int(floor_row[0]) <= base
        bound = "AND seq < ?" if upto is not None else ""
        args = (base,) if upto is None else (base, upto)
        rows = conn.execute(
            f"SELECT seq, core, lo, hi, added FROM slot_log WHERE seq > ? {bound} "
            "ORDER BY seq, added, rowid",
            args,
        ).fetchall()
        last = conn.execute(
            f"SELECT coalesce(max(seq), 0) FROM changes WHERE seq > ? {bound}", args
        ).fetchone()[0]
        self.seq = max(base, int(last))
        # (seq, core, removed slots, added (slot, record) pairs)
        self.entries: list[tuple[int, str, list[int], list[tuple[int, dict[str, object]]]]] = []
        for seq, core, lo, hi, added in rows:
            if added:
                found = conn.execute(
                    f"SELECT {DOC_COLUMNS} FROM {TABLES[core]} WHERE slot BETWEEN ? AND ? "
                    "ORDER BY slot",
                    (lo, hi),
                ).fetchall()
                self.entries.append((seq, core, [], [unpack(r) for r in found]))
            else:
                self.entries.append((seq, core, list(range(lo, hi + 1)), []))


class Store:
    def __init__(self, path: Path, *, readonly: bool = False, durable: bool = True) -> None:
        self.path = path
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self.readonly = readonly
        # a replica can re-fetch what a power cut loses, so it need not sync every commit
        self.durable = durable
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect(write=True)
            self._migrate()

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        if write:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect on a new file only
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            # identifier indexes take random inserts: a large page cache keeps bulk loads of
            # millions of records from thrashing the disk
            conn.execute("PRAGMA cache_size=-1048576")
            # SQLite would checkpoint inside COMMIT, which a write makes while searches wait
            # for its facet-index update; `_checkpoint_if_due` does it after instead
            conn.execute("PRAGMA wal_autocheckpoint=0")
        else:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA cache_size=-65536")
            # a search past its time limit is stopped inside SQLite too (index/deadline.py)
            conn.set_progress_handler(deadline.sqlite_progress, deadline.SQLITE_PROGRESS_STEPS)
        # a writer may queue behind another worker process's large batch (`--workers`)
        conn.execute(f"PRAGMA busy_timeout={60000 if write else 10000}")
        return conn

    def _migrate(self) -> None:
        conn = self._writer
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer esgf-ha (schema {row[0]})")
        if row is not None and int(row[0]) < 2:
            self._rebuild_text()
        # IMMEDIATE: a deferred transaction that reads and then writes fails at once (no busy
        # wait) when another process commits in between, as the other workers do
        conn.executescript(
            "BEGIN IMMEDIATE;"
            + "".join(_schema(t) for t in TABLES.values())
            + """
            CREATE TABLE IF NOT EXISTS changes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
                kind TEXT NOT NULL, payload BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS slot_log (
                seq INTEGER NOT NULL, core TEXT NOT NULL,
                lo INTEGER NOT NULL, hi INTEGER NOT NULL, added INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS slot_log_seq ON slot_log(seq);
            INSERT OR REPLACE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
            COMMIT;""".replace("{SCHEMA_VERSION}", str(SCHEMA_VERSION))
        )
        # (re)creates what a bulk load killed half-way left dropped
        self._create_indexes()

    def _rebuild_text(self) -> None:
        """Recompute every free-text body (schema 1 held no identifiers), in one transaction."""
        conn = self._writer
        began = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES.values():
                conn.execute(f"DELETE FROM {table}_text")
                rows = conn.execute(f"SELECT {DOC_COLUMNS} FROM {table}")
                while batch := rows.fetchmany(10_000):
                    bodies = [(slot, _text(record)) for slot, record in map(unpack, batch)]
                    conn.executemany(
                        f"INSERT INTO {table}_text (rowid, body) VALUES (?, ?)", bodies
                    )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', '2')")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("free-text words rebuilt", extra={"seconds": round(time.monotonic() - began, 1)})

    def _create_indexes(self) -> None:
        conn = self._writer
        for table in TABLES.values():
            for sql in _index_statements(conn, table).values():
                conn.execute(sql)

    @contextmanager
    def bulk_mode(self) -> Iterator[None]:
        """A large load: the secondary indexes are dropped and built once at the end.

        Inserting millions of records with random keys into live B-trees rewrites far more
        pages than the records fill (each commit copies every touched page to the WAL; at 9M
        datasets the loader wrote 18 bytes per stored byte); one sort per index at the end does
        not. A duplicate id then fails the rebuild, with the error naming the index.
        """
        with self._write_lock:
            conn = self._writer
            for table in TABLES.values():
                for name in _index_statements(conn, table):
                    conn.execute(f"DROP INDEX IF EXISTS {name}")
        try:
            yield
        finally:
            with self._write_lock:
                try:
                    self._create_indexes()
                except sqlite3.IntegrityError as exc:
                    raise ValueError(f"the bulk load holds duplicate ids: {exc}") from None

    # -- writing ------------------------------------------------------------------------------
    @contextmanager
    def transaction(
        self, commit: Callable[[Transaction, Callable[[], None]], None] | None = None
    ) -> Iterator[Transaction]:
        """One atomic write: everything done on the Transaction commits, or nothing does.

        `commit(txn, do_commit)`, if given, must call `do_commit()`; it lets the caller make
        the commit and its own follow-up (the in-memory index) one step for its readers.
        """
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            txn = Transaction(conn)
            try:
                yield txn
                _log_entry(txn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            done = False

            def do_commit() -> None:
                nonlocal done
                conn.execute("COMMIT")
                done = True

            try:
                if commit is None:
                    do_commit()
                else:
                    commit(txn, do_commit)
            finally:
                if not done:
                    conn.execute("ROLLBACK")
            self._checkpoint_if_due(conn)

    def _checkpoint_if_due(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the store once it holds CHECKPOINT_BYTES, as SQLite's own
        automatic checkpoint would, but after the commit and outside the search lock. A
        passive checkpoint waits for no reader; what readers still use is copied next time."""
        try:
            size = os.stat(f"{self.path}-wal").st_size
        except FileNotFoundError:
            return
        if size >= CHECKPOINT_BYTES:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def bulk_insert(
        self,
        core: str,
        records: Iterable[dict[str, object]],
        commit: Callable[[Transaction, Callable[[], None]], None] | None = None,
    ) -> list[int]:
        """Insert many records in one transaction (no change-log entry per record); their
        slots are also in `txn.bulk_slots` for a `commit` hook (see `transaction`)."""
        # The log records only that a bulk load happened, not its records (millions at once):
        # a replica that meets a "bulk" entry bootstraps from a snapshot instead of replaying.
        with self.transaction(commit) as txn:
            txn.bulk_slots = _insert_many(txn.conn, Prepared(core, records))
            txn.bulk_core = core
            txn.log("bulk", {"core": core, "count": len(txn.bulk_slots)})
        return txn.bulk_slots

    # -- reading ------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(write=False)
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    def last_seq(self) -> int:
        row = self.reader().execute("SELECT max(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def max_slots(self) -> dict[str, int]:
        conn = self.reader()
        return {
            core: int(conn.execute(f"SELECT coalesce(max(slot), 0) FROM {table}").fetchone()[0])
            for core, table in TABLES.items()
        }

    def count(self, core: str) -> int:
        return int(self.reader().execute(f"SELECT count(*) FROM {TABLES[core]}").fetchone()[0])

    def scan(
        self, core: str, batch: int = 50_000, conn: sqlite3.Connection | None = None
    ) -> Iterator[tuple[int, dict[str, object]]]:
        """Every record of a core in slot order; on `conn` (inside its read transaction) if
        given, else on a connection of its own."""
        own = conn is None
        conn = self._connect(write=False) if conn is None else conn
        try:
            last = 0
            while True:
                rows = conn.execute(
                    f"SELECT {DOC_COLUMNS} FROM {TABLES[core]} WHERE slot > ? "
                    "ORDER BY slot LIMIT ?",
                    (last, batch),
                ).fetchall()
                if not rows:
                    return
                for row in rows:
                    yield unpack(row)
                last = rows[-1][0]
        finally:
            if own:
                conn.close()

    @contextmanager
    def read_snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own inside one read transaction: everything read on it is of
        one committed state, whatever other processes commit meanwhile."""
        conn = self._connect(write=False)
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()

    def delta_since(self, base: int) -> SlotDelta:
        """What was committed after `base` (by any process), read in one snapshot."""
        conn = self.reader()
        conn.execute("BEGIN")
        try:
            return SlotDelta(conn, base)
        finally:
            conn.execute("COMMIT")

    def fetch(self, core: str, slots: Sequence[int]) -> dict[int, dict[str, object]]:
        if not len(slots):
            return {}
        rows = (
            self.reader()
            .execute(
                f"SELECT {DOC_COLUMNS} FROM {TABLES[core]} "
                "WHERE slot IN (SELECT value FROM json_each(?))",
                (orjson.dumps([int(s) for s in slots]),),
            )
            .fetchall()
        )
        return dict(unpack(row) for row in rows)

    def slots_equal(self, core: str, field: str, values: Sequence[str]) -> np.ndarray:
        rows = (
            self.reader()
            .execute(
                f"SELECT slot FROM {TABLES[core]} WHERE {field} IN (SELECT value FROM json_each(?))",
                (orjson.dumps(list(values)),),
            )
            .fetchall()
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def slots_glob(self, core: str, field: str, pattern: str) -> np.ndarray:
        rows = (
            self.reader()
            .execute(f"SELECT slot FROM {TABLES[core]} WHERE {field} GLOB ?", (pattern,))
            .fetchall()
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def slots_range(
        self,
        core: str,
        field: str,
        low: str | None,
        high: str | None,
        inc_low: bool,
        inc_high: bool,
    ) -> np.ndarray:
        where, args = [], []
        if low is not None:
            where.append(f"{field} {'>=' if inc_low else '>'} ?")
            args.append(low)
        if high is not None:
            where.append(f"{field} {'<=' if inc_high else '<'} ?")
            args.append(high)
        if not where:
            where.append(f"{field} IS NOT NULL")
        rows = (
            self.reader()
            .execute(f"SELECT slot FROM {TABLES[core]} WHERE {' AND '.join(where)}", args)
            .fetchall()
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def slots_text(self, core: str, fts_query: str, from_slot: int = 0) -> np.ndarray:
        """Sorted slots from `from_slot` on whose title or description match `fts_query`."""
        table = f"{TABLES[core]}_text"
        try:
            # one JSON array instead of a Python tuple per row: common words match millions
            (found,) = (
                self.reader()
                .execute(
                    f"SELECT json_group_array(rowid) FROM (SELECT rowid FROM {table}"
                    f" WHERE {table} MATCH ? AND rowid >= ? ORDER BY rowid)",
                    (fts_query, from_slot),
                )
                .fetchone()
            )
        except sqlite3.OperationalError:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(orjson.loads(found), dtype=np.int64)

    def slots_containing(self, core: str, field: str, values: Sequence[str]) -> np.ndarray:
        """Slots whose stored-only field holds any of `values` exactly (one scan for all of
        them; rare queries only)."""
        wanted = set(values)
        out = []
        for i, row in enumerate(self.reader().execute(f"SELECT {DOC_COLUMNS} FROM {TABLES[core]}")):
            if i % 4096 == 0:
                deadline.check()
            slot, record = unpack(row)
            got = record.get(field)
            if isinstance(got, list):
                if not wanted.isdisjoint(v for v in got if isinstance(v, str)):
                    out.append(slot)
            elif isinstance(got, str) and got in wanted:
                out.append(slot)
        return np.asarray(out, dtype=np.int64)

    def order_by_id(self, core: str, slots: Sequence[int]) -> list[int]:
        rows = (
            self.reader()
            .execute(
                f"SELECT slot FROM {TABLES[core]} WHERE slot IN (SELECT value FROM json_each(?)) "
                "ORDER BY id",
                (orjson.dumps([int(s) for s in slots]),),
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def all_slots_by_id(self, core: str) -> np.ndarray:
        rows = self.reader().execute(f"SELECT slot FROM {TABLES[core]} ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def ids_of(self, core: str, slots: Sequence[int]) -> dict[int, str]:
        rows = (
            self.reader()
            .execute(
                f"SELECT slot, id FROM {TABLES[core]} WHERE slot IN (SELECT value FROM json_each(?))",
                (orjson.dumps([int(s) for s in slots]),),
            )
            .fetchall()
        )
        return dict(rows)

    def changes_since(self, seq: int, limit: int) -> list[tuple[int, float, str, bytes]]:
        return (
            self.reader()
            .execute(
                "SELECT seq, at, kind, payload FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            )
            .fetchall()
        )

    def change_at(self, seq: int) -> float | None:
        """Commit time of the entry `seq` (None if the log has no such entry)."""
        row = self.reader().execute("SELECT at FROM changes WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else float(row[0])

    def last_change(self) -> tuple[int, float | None]:
        row = (
            self.reader()
            .execute("SELECT seq, at FROM changes ORDER BY seq DESC LIMIT 1")
            .fetchone()
        )
        return (0, None) if row is None else (int(row[0]), float(row[1]))

    def backup_to(self, target: Path) -> int:
        """A consistent copy of the whole store in `target` (SQLite online backup); its seq."""
        source = self._connect(write=False)
        dest = sqlite3.connect(target)
        try:
            # one step: the copy is of one read snapshot, while writers go on in the WAL
            source.backup(dest, pages=-1)
            dest.execute("PRAGMA journal_mode=DELETE")
            row = dest.execute("SELECT max(seq) FROM changes").fetchone()
            return int(row[0] or 0)
        finally:
            dest.close()
            source.close()

    def digest(self, core: str, low: str, high: str | None) -> tuple[int, str]:
        """(count, sha256) of the records with low <= id < high (high None: no bound)."""
        sha = hashlib.sha256()
        count = 0
        for record_id, doc_hash in self.hashes(core, low, high):
            sha.update(record_id.encode() + b"\0" + doc_hash.encode() + b"\n")
            count += 1
        return count, sha.hexdigest()

    def hashes(self, core: str, low: str, high: str | None) -> Iterator[tuple[str, str]]:
        """(id, content hash) of the records in an id range, in id order."""
        where, args = "id >= ?", [low]
        if high is not None:
            where += " AND id < ?"
            args.append(high)
        conn = self._connect(write=False)
        try:
            rows = conn.execute(
                f"SELECT {DOC_COLUMNS} FROM {TABLES[core]} WHERE {where} ORDER BY id", args
            )
            for row in rows:
                keys = "\0".join("" if k is None else str(k) for k in row[1:-1])
                body = keys.encode() + b"\0" + zlib.decompress(row[-1])
                yield str(row[1]), hashlib.sha256(body).hexdigest()[:32]
        finally:
            conn.close()

    def split_points(self, core: str, low: str, high: str | None, parts: int) -> list[str]:
        """Ids cutting [low, high) into `parts` ranges of about equal record counts."""
        where, args = "id >= ?", [low]
        if high is not None:
            where += " AND id < ?"
            args.append(high)
        conn = self.reader()
        total = conn.execute(f"SELECT count(*) FROM {TABLES[core]} WHERE {where}", args).fetchone()[
            0
        ]
        step = max(1, -(-total // parts))
        rows = conn.execute(
            f"SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n "
            f"FROM {TABLES[core]} WHERE {where}) WHERE n > 1 AND (n - 1) % ? = 0",
            [*args, step],
        ).fetchall()
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        """Close the writer and every thread's reader (callers hold no search at this time)."""
        if not self.readonly:
            self._writer.close()
        for conn in self._readers:
            conn.close()
        self._readers.clear()
        self._local = threading.local()
