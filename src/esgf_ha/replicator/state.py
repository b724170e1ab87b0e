"""The replicator's durable state (SQLite in its state dir): which dataset versions it works
on, every file's progress and failures, and what it measured of each data node. A replicator
killed at any point restarts from here: done files are never fetched again, `.part` files
resume, and publication is idempotent on the master.

Dataset status: queued → complete (all files verified in place) → published (replica records
accepted by the master); or failed (a file failed for good); retracted (withdrawn here).
File status: queued → done | failed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    instance_id TEXT PRIMARY KEY, master_id TEXT NOT NULL, version TEXT NOT NULL,
    status TEXT NOT NULL, record BLOB NOT NULL, replica_id TEXT,
    error TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, rel_path TEXT NOT NULL,
    size INTEGER NOT NULL, checksum TEXT NOT NULL, checksum_type TEXT NOT NULL,
    sources BLOB NOT NULL, record BLOB NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, errors BLOB NOT NULL DEFAULT '[]',
    source TEXT, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_dataset ON files (instance_id);
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY, bytes INTEGER NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, last_failure REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass
class FileRow:
    file_id: str
    instance_id: str
    rel_path: str
    size: int
    checksum: str
    checksum_type: str
    sources: list[str]
    record: dict[str, object]
    status: str
    attempts: int
    errors: list[str]
    source: str | None


class State:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "replicator.sqlite3"
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    @contextmanager
    def txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    # -- datasets ------------------------------------------------------------------------------
    def add_dataset(
        self,
        record: dict[str, object],
        files: list[tuple[str, str, int, str, str, list[str], dict]],
    ) -> bool:
        """Queue a dataset version with its files; False when it is already known."""
        now = time.time()
        instance = str(record["instance_id"])
        with self.txn() as c:
            if c.execute("SELECT 1 FROM datasets WHERE instance_id=?", (instance,)).fetchone():
                return False
            c.execute(
                "INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?)",
                (instance, str(record["master_id"]), str(record.get("version", "")), "queued",
                 orjson.dumps(record), None, None, now),
            )  # fmt: skip
            c.executemany(
                "INSERT OR IGNORE INTO files (file_id, instance_id, rel_path, size, checksum, "
                "checksum_type, sources, record, status, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (fid, instance, rel, size, checksum, ctype, orjson.dumps(srcs),
                     orjson.dumps(rec), "queued", now)
                    for fid, rel, size, checksum, ctype, srcs, rec in files
                ],
            )  # fmt: skip
        return True

    def datasets(self, *statuses: str) -> list[tuple[str, str, str, dict[str, object], str | None]]:
        """(instance_id, master_id, status, record, replica_id) rows."""
        sql = "SELECT instance_id, master_id, status, record, replica_id FROM datasets"
        args: tuple[str, ...] = ()
        if statuses:
            sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args = statuses
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY instance_id", args).fetchall()
        return [(r[0], r[1], r[2], orjson.loads(r[3]), r[4]) for r in rows]

    def known(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.conn.execute("SELECT instance_id FROM datasets")}

    def set_dataset(
        self,
        instance_id: str,
        status: str,
        *,
        replica_id: str | None = None,
        error: str | None = None,
    ) -> None:
        with self.txn() as c:
            c.execute(
                "UPDATE datasets SET status=?, replica_id=coalesce(?, replica_id), error=?, "
                "updated=? WHERE instance_id=?",
                (status, replica_id, error, time.time(), instance_id),
            )

    # -- files ---------------------------------------------------------------------------------
    def files(self, instance_id: str | None = None, *statuses: str) -> list[FileRow]:
        sql = (
            "SELECT file_id, instance_id, rel_path, size, checksum, checksum_type, sources, "
            "record, status, attempts, errors, source FROM files WHERE 1=1"
        )
        args: list[object] = []
        if instance_id is not None:
            sql += " AND instance_id=?"
            args.append(instance_id)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY file_id", args).fetchall()
        return [
            FileRow(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), orjson.loads(r[7]),
                    r[8], r[9], orjson.loads(r[10]), r[11])
            for r in rows
        ]  # fmt: skip

    def file_done(self, file_id: str, source: str, attempts: int, errors: list[str]) -> None:
        with self.txn() as c:
            c.execute(
                "UPDATE files SET status='done', source=?, attempts=?, errors=?, updated=? "
                "WHERE file_id=?",
                (source, attempts, orjson.dumps(errors), time.time(), file_id),
            )

    def file_failed(self, file_id: str, attempts: int, errors: list[str]) -> None:
        with self.txn() as c:
            c.execute(
                "UPDATE files SET status='failed', attempts=?, errors=?, updated=? WHERE file_id=?",
                (attempts, orjson.dumps(errors), time.time(), file_id),
            )

    def file_attempted(self, file_id: str, attempts: int, errors: list[str]) -> None:
        with self.txn() as c:
            c.execute(
                "UPDATE files SET attempts=?, errors=?, updated=? WHERE file_id=?",
                (attempts, orjson.dumps(errors), time.time(), file_id),
            )

    def retry_failed(self) -> int:
        """Give permanently failed files (and their datasets) another chance."""
        with self.txn() as c:
            n = c.execute(
                "UPDATE files SET status='queued', attempts=0, errors='[]' WHERE status='failed'"
            ).rowcount
            c.execute("UPDATE datasets SET status='queued', error=NULL WHERE status='failed'")
        return int(n)

    # -- data nodes ----------------------------------------------------------------------------
    def host_stats(self) -> dict[str, tuple[int, float, int, float | None]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT host, bytes, seconds, failures, last_failure FROM hosts"
            )
            return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def host_transfer(self, host: str, nbytes: int, seconds: float) -> None:
        with self.txn() as c:
            c.execute(
                "INSERT INTO hosts (host, bytes, seconds) VALUES (?,?,?) ON CONFLICT(host) DO "
                "UPDATE SET bytes=bytes+excluded.bytes, seconds=seconds+excluded.seconds",
                (host, nbytes, seconds),
            )

    def host_failure(self, host: str) -> None:
        with self.txn() as c:
            c.execute(
                "INSERT INTO hosts (host, failures, last_failure) VALUES (?,1,?) ON CONFLICT(host) "
                "DO UPDATE SET failures=failures+1, last_failure=excluded.last_failure",
                (host, time.time()),
            )

    # -- position in the master's change log -----------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.txn() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def summary(self) -> dict[str, object]:
        with self._lock:
            return _summary(self.conn)

    def close(self) -> None:
        self.conn.close()


def _summary(conn: sqlite3.Connection) -> dict[str, object]:
    ds = dict(conn.execute("SELECT status, count(*) FROM datasets GROUP BY status"))
    fs = {
        r[0]: {"files": r[1], "bytes": r[2] or 0}
        for r in conn.execute("SELECT status, count(*), sum(size) FROM files GROUP BY status")
    }
    return {"datasets": ds, "files": fs}


def read_summary(state_dir: Path) -> dict[str, object] | None:
    """A running replicator's progress, read without disturbing it (None: no state yet)."""
    path = state_dir / "replicator.sqlite3"
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        return _summary(conn)
    except sqlite3.Error:
        return None
    finally:
        conn.close()
