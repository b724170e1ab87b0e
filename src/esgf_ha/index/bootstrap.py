"""Snapshot bootstrap: a consistent copy of a whole store, made on one side, opened on the other.

Upstream: `make_snapshot` copies the store with SQLite's online backup API into a temporary
file (writers go on meanwhile) and hashes it; the HTTP layer streams the file with its change
log position and hash in headers, then deletes it.

Replica: `download_snapshot` writes the body to `index.sqlite3.incoming`, checks the length,
the hash and that the file is an esgf-ha store at the announced position, and only then does
the service swap it in (`IndexService.replace_store`). A failed or interrupted download leaves
the current store untouched and the partial file is removed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from esgf_ha.index.store import Store

SEQ_HEADER = "X-ESGF-Snapshot-Sequence"
HASH_HEADER = "X-ESGF-Snapshot-SHA256"
CHUNK = 1024 * 1024


class SnapshotError(Exception):
    """A snapshot could not be fetched or is not a valid store."""


@dataclass
class Snapshot:
    path: Path
    seq: int
    sha256: str
    size: int


def make_snapshot(store: Store, directory: Path) -> Snapshot:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="snapshot-", suffix=".sqlite3", dir=directory)
    path = Path(name)
    try:
        with open(fd, "wb"):
            pass
        seq = store.backup_to(path)
        sha = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                sha.update(block)
        return Snapshot(path, seq, sha.hexdigest(), path.stat().st_size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def download_snapshot(client: httpx.Client, target: Path) -> int:
    """Fetch the upstream's snapshot into `target` (verified); its change-log position."""
    target.unlink(missing_ok=True)
    try:
        with client.stream("GET", "/api/v1/snapshot", timeout=httpx.Timeout(60, read=600)) as r:
            if r.status_code != 200:
                r.read()
                raise SnapshotError(f"snapshot refused: HTTP {r.status_code} {r.text[:200]}")
            try:
                seq = int(r.headers[SEQ_HEADER])
                expected = r.headers[HASH_HEADER]
                length = int(r.headers["content-length"])
            except (KeyError, ValueError):
                raise SnapshotError("snapshot answer lacks its sequence, hash or length") from None
            sha = hashlib.sha256()
            size = 0
            with target.open("wb") as f:
                for block in r.iter_bytes(CHUNK):
                    sha.update(block)
                    size += len(block)
                    f.write(block)
        if size != length or sha.hexdigest() != expected:
            raise SnapshotError(f"snapshot damaged in transfer ({size} of {length} bytes)")
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            got = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise SnapshotError(f"snapshot is not an index store: {exc}") from None
        finally:
            conn.close()
        if got != seq:
            raise SnapshotError(f"snapshot holds seq {got}, announced {seq}")
        return seq
    except BaseException:
        target.unlink(missing_ok=True)
        raise
