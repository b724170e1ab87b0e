"""Streaming file checksums.

hashlib releases the GIL while it hashes a large buffer, so a thread pool hashes several files
at once on several cores; one large buffer per read keeps the system-call count low.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUFFER = 4 * 1024 * 1024
ALGORITHMS = {"SHA256": "sha256", "MD5": "md5"}
_local = threading.local()


def file_checksum(path: Path | str, checksum_type: str = "SHA256") -> str:
    """Hex digest of a file's content (`checksum_type` is SHA256 or MD5)."""
    digest = hashlib.new(ALGORITHMS[checksum_type.upper()])
    # one buffer per thread, reused: allocating 4 MiB per file costs more than hashing a
    # small file
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(BUFFER)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def checksum_many(
    paths: Iterable[Path],
    checksum_type: str = "SHA256",
    *,
    threads: int = 4,
    on_done: Callable[[Path], None] | None = None,
) -> Iterator[tuple[Path, str | BaseException]]:
    """(path, digest or the error) for every path, in input order."""

    def one(path: Path) -> str | BaseException:
        try:
            return file_checksum(path, checksum_type)
        except OSError as exc:
            return exc
        finally:
            if on_done is not None:
                on_done(path)

    items = list(paths)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        yield from zip(items, pool.map(one, items), strict=True)
