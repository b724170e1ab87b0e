"""The durable record store: SQLite in WAL mode, one writer, read-only readers.

One table per core holds every record as JSON at a slot (its rowid, never reused), with the
identifier fields as indexed columns; an FTS5 table holds title and description words for
free-text search; `changes` is the ordered change log written in the same transaction as the
records it describes, which replicas follow.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson

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
SCHEMA_VERSION = 1
PAGE_SIZE = 16384


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


def _text(record: dict[str, object]) -> str:
    parts = [str(record.get("title", ""))]
    desc = record.get("description")
    if isinstance(desc, list):
        parts.extend(str(d) for d in desc)
    return " ".join(parts)


def _schema(table: str) -> str:
    cols = ", ".join(f"{c} TEXT" for c in KEY_COLUMNS[1:])
    idx = "\n".join(
        f"CREATE INDEX IF NOT EXISTS {table}_{c} ON {table}({c});" for c in INDEXED_KEYS[table]
    )
    return f"""
    CREATE TABLE IF NOT EXISTS {table} (
        slot INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE, {cols}, doc BLOB NOT NULL);
    {idx}
    CREATE VIRTUAL TABLE IF NOT EXISTS {table}_text USING fts5(body, tokenize='unicode61');
    """


class Transaction:
    """What the publication logic may do inside one write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.added: list[tuple[str, int, dict[str, object]]] = []
        self.removed: list[tuple[str, int]] = []
        self.changes: list[tuple[str, bytes]] = []

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

    def delete(self, core: str, slot: int) -> None:
        table = TABLES[core]
        self.conn.execute(f"DELETE FROM {table} WHERE slot = ?", (slot,))
        self.conn.execute(f"DELETE FROM {table}_text WHERE rowid = ?", (slot,))
        self.removed.append((core, slot))
        self.added = [a for a in self.added if not (a[0] == core and a[1] == slot)]

    def replace(self, core: str, slot: int, record: dict[str, object]) -> int:
        self.delete(core, slot)
        return self.insert(core, record)

    def log(self, kind: str, payload: dict[str, object]) -> None:
        self.changes.append((kind, orjson.dumps(payload)))


class Store:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.readonly = readonly
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect(write=True)
            self._migrate()

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        if write:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect on a new file only
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # identifier indexes take random inserts: a large page cache keeps bulk loads of
            # millions of records from thrashing the disk
            conn.execute("PRAGMA cache_size=-1048576")
        else:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _migrate(self) -> None:
        conn = self._writer
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer esgf-ha (schema {row[0]})")
        conn.executescript(
            "BEGIN;"
            + "".join(_schema(t) for t in TABLES.values())
            + """
            CREATE TABLE IF NOT EXISTS changes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
                kind TEXT NOT NULL, payload BLOB NOT NULL);
            INSERT OR REPLACE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
            COMMIT;""".replace("{SCHEMA_VERSION}", str(SCHEMA_VERSION))
        )

    # -- writing ------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic write: everything done on the Transaction commits, or nothing does."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            txn = Transaction(conn)
            try:
                yield txn
                now = time.time()
                for kind, payload in txn.changes:
                    conn.execute(
                        "INSERT INTO changes (at, kind, payload) VALUES (?, ?, ?)",
                        (now, kind, payload),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def bulk_insert(self, core: str, records: Iterable[dict[str, object]]) -> list[int]:
        """Insert many records in one transaction (no change-log entry per record)."""
        table = TABLES[core]
        slots: list[int] = []
        with self.transaction() as txn:
            conn = txn.conn
            start = (conn.execute(f"SELECT max(slot) FROM {table}").fetchone()[0] or 0) + 1
            seq_row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
            ).fetchone()
            start = max(start, (seq_row[0] if seq_row else 0) + 1)
            rows = []
            texts = []
            for i, record in enumerate(records):
                slot = start + i
                rows.append([slot] + [_key(record, c) for c in KEY_COLUMNS] + [pack(record)])
                texts.append((slot, _text(record)))
                slots.append(slot)
            conn.executemany(
                f"INSERT INTO {table} (slot, {', '.join(KEY_COLUMNS)}, doc) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            conn.executemany(f"INSERT INTO {table}_text (rowid, body) VALUES (?, ?)", texts)
            txn.log("bulk", {"core": core, "count": len(rows)})
        return slots

    # -- reading ------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(write=False)
            self._local.conn = conn
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

    def scan(self, core: str, batch: int = 50_000) -> Iterator[tuple[int, dict[str, object]]]:
        conn = self._connect(write=False)
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
            conn.close()

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

    def slots_text(self, core: str, fts_query: str) -> np.ndarray:
        try:
            rows = (
                self.reader()
                .execute(
                    f"SELECT rowid FROM {TABLES[core]}_text WHERE {TABLES[core]}_text MATCH ?",
                    (fts_query,),
                )
                .fetchall()
            )
        except sqlite3.OperationalError:
            return np.zeros(0, dtype=np.int64)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def slots_containing(self, core: str, field: str, value: str) -> np.ndarray:
        """Slots whose stored-only field holds `value` exactly (a scan; rare queries only)."""
        out = []
        for row in self.reader().execute(f"SELECT {DOC_COLUMNS} FROM {TABLES[core]}"):
            slot, record = unpack(row)
            got = record.get(field)
            if got == value or (isinstance(got, list) and value in got):
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

    def close(self) -> None:
        if not self.readonly:
            self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
