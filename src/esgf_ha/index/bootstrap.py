"""Snapshot bootstrap: a consistent copy of a whole index, made on one side, opened on the other.

Upstream (`make_snapshot`): while writes wait (the service's read lock), the store is copied
with SQLite's online backup API and the in-memory facet index is saved beside it, both at the
same change-log position. Rebuilding the facet index from a million records takes minutes;
loading the saved one takes seconds, which is what makes a large bootstrap fast. The files are
streamed as one uncompressed tar: `manifest.json` first (seq, name and size of each file),
then the files, then `sha256.json` with their hashes, computed as they were read (the copy is
read once); the temporary copy is deleted afterwards.

Replica (`download_snapshot`): unpacks the stream into a fresh directory, accepting only the
names it expects, hashes every file as it arrives, checks sizes and hashes, and only then lets the
service swap the copy in (`IndexService.replace_store`). A failed or interrupted download
leaves the current store untouched and removes the partial copy.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from esgf_ha.index import snapshot
from esgf_ha.index.service import IndexService

SEQ_HEADER = "X-ESGF-Snapshot-Sequence"
CHUNK = 1024 * 1024
STORE_NAME = "index.sqlite3"
FACETS_NAME = "facets"
BLOCK = 512
STALE_AFTER = 6 * 3600.0
HASHES_NAME = "sha256.json"


class SnapshotError(Exception):
    """A snapshot could not be fetched or is not a valid index copy."""


@dataclass
class SnapshotFile:
    name: str
    path: Path
    size: int


@dataclass
class Snapshot:
    directory: Path
    seq: int
    files: list[SnapshotFile]

    @property
    def manifest(self) -> bytes:
        return orjson.dumps(
            {"seq": self.seq, "files": [{"name": f.name, "size": f.size} for f in self.files]}
        )

    def _hashes(self, digests: dict[str, str]) -> bytes:
        return orjson.dumps({f.name: digests.get(f.name, "0" * 64) for f in self.files})

    @property
    def size(self) -> int:
        """Bytes of the tar stream: a header and padded data per member, two zero blocks."""
        total = 2 * BLOCK + _padded(len(self.manifest)) + _padded(len(self._hashes({})))
        for f in self.files:
            total += BLOCK + _padded(f.size)
        return total + 2 * BLOCK

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def stream(self) -> Iterator[bytes]:
        """The tar stream; each file is hashed as it is read, the hashes come last (so the
        copy is read once, not once to hash and once to send)."""
        manifest = self.manifest
        yield _header("manifest.json", len(manifest))
        yield manifest + _padding(len(manifest))
        digests: dict[str, str] = {}
        for f in self.files:
            yield _header(f.name, f.size)
            sha, sent = hashlib.sha256(), 0
            with f.path.open("rb") as fh:
                while block := fh.read(CHUNK):
                    sha.update(block)
                    sent += len(block)
                    yield block
            if sent != f.size:
                raise SnapshotError(f"{f.name} changed while being sent")
            digests[f.name] = sha.hexdigest()
            yield _padding(f.size)
        hashes = self._hashes(digests)
        yield _header(HASHES_NAME, len(hashes))
        yield hashes + _padding(len(hashes))
        yield b"\0" * (2 * BLOCK)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _padding(size: int) -> bytes:
    return b"\0" * (_padded(size) - size)


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def make_snapshot(service: IndexService, parent: Path) -> Snapshot:
    parent.mkdir(parents=True, exist_ok=True)
    # copies whose download was abandoned (the cleanup runs only after a complete answer)
    for old in parent.glob("snapshot-*"):
        if time.time() - old.stat().st_mtime > STALE_AFTER:
            shutil.rmtree(old, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix="snapshot-", dir=parent))
    try:
        with service.lock.read():
            seq = service.store.backup_to(directory / STORE_NAME)
            snapshot.save(directory / FACETS_NAME, service.cores, seq, service.store.max_slots())
        paths = [directory / STORE_NAME] + sorted((directory / FACETS_NAME).iterdir())
        files = [SnapshotFile(str(p.relative_to(directory)), p, p.stat().st_size) for p in paths]
        return Snapshot(directory, seq, files)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


class _Body:
    """A read()-able view of a streamed HTTP body, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = memoryview(b"")
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size
        while wanted != 0:
            if self.offset >= len(self.buffer):
                try:
                    self.buffer, self.offset = memoryview(next(self.chunks)), 0
                except StopIteration:
                    break
            end = len(self.buffer) if wanted < 0 else min(len(self.buffer), self.offset + wanted)
            parts.append(bytes(self.buffer[self.offset : end]))
            if wanted > 0:
                wanted -= end - self.offset
            self.offset = end
        return b"".join(parts)


def _allowed(name: str) -> bool:
    if name == STORE_NAME:
        return True
    head, _, tail = name.partition("/")
    return head == FACETS_NAME and bool(tail) and "/" not in tail and not tail.startswith(".")


def download_snapshot(client: httpx.Client, target: Path) -> int:
    """Fetch the upstream's snapshot into the directory `target` (verified); its seq."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        with client.stream("GET", "/api/v1/snapshot", timeout=httpx.Timeout(60, read=600)) as r:
            if r.status_code != 200:
                r.read()
                raise SnapshotError(f"snapshot refused: HTTP {r.status_code} {r.text[:200]}")
            manifest: dict | None = None
            hashes: dict | None = None
            got: dict[str, tuple[int, str]] = {}
            try:
                body = _Body(r.iter_bytes(CHUNK))
                with tarfile.open(fileobj=body, mode="r|", bufsize=CHUNK) as tar:  # type: ignore[call-overload]
                    for member in tar:
                        source = tar.extractfile(member) if member.isfile() else None
                        if source is None:
                            raise SnapshotError(f"unexpected tar member {member.name!r}")
                        if member.name == "manifest.json":
                            manifest = orjson.loads(source.read())
                            continue
                        if member.name == HASHES_NAME:
                            hashes = orjson.loads(source.read())
                            continue
                        if not _allowed(member.name):
                            raise SnapshotError(f"unexpected file {member.name!r} in snapshot")
                        path = target / member.name
                        path.parent.mkdir(parents=True, exist_ok=True)
                        sha, size = hashlib.sha256(), 0
                        with path.open("wb") as out:
                            while block := source.read(CHUNK):
                                sha.update(block)
                                size += len(block)
                                out.write(block)
                        got[member.name] = (size, sha.hexdigest())
            except (tarfile.TarError, orjson.JSONDecodeError, EOFError) as exc:
                raise SnapshotError(f"snapshot stream is damaged: {exc}") from None
        if manifest is None or hashes is None:
            raise SnapshotError("snapshot lacks its manifest or its hashes (cut short?)")
        expected = {f["name"]: (f["size"], hashes.get(f["name"])) for f in manifest["files"]}
        if expected != got:
            bad = sorted(n for n in expected.keys() | got.keys() if expected.get(n) != got.get(n))
            raise SnapshotError(f"snapshot damaged in transfer: {', '.join(bad)}")
        return int(manifest["seq"])
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
