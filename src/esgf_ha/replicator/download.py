"""Fetch one file from whichever data node serves it best: ranked by measured throughput and
recent failures, a per-host concurrency limit, resume of `<file>.part` with Range, the checksum
computed while the bytes stream in, the next source on any error or mismatch, and the final
path reached only by a rename of a verified file.

Each transfer runs in a worker thread on libcurl (receive.py): receiving, decrypting, hashing
and writing all release the GIL, so transfers use every core.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from esgf_ha.replicator.errors import ReceiveError, SourceFailed
from esgf_ha.replicator.receive import Receiver
from esgf_ha.replicator.state import FileRow, State

log = logging.getLogger("esgf_ha.replicator")
CHUNK = 1 << 20
UNKNOWN_SPEED = 1e12  # an untried host is tried early: that is how it gets measured
FAILURE_MEMORY_SECONDS = 300.0
HASHES = {"SHA256": hashlib.sha256, "MD5": hashlib.md5}


@dataclass
class Outcome:
    ok: bool
    source: str | None
    errors: list[str]
    attempts: int
    nbytes: int = 0


def host_of(url: str) -> str:
    return urlsplit(url).netloc


class Fetcher:
    def __init__(
        self,
        state: State,
        root: Path,
        *,
        per_host: int = 4,
        max_attempts: int = 5,
        token: str | None = None,
        progress: Callable[[int], None] | None = None,
        workers: int = 8,
        ca_file: Path | None = None,
    ) -> None:
        self.state = state
        self.receiver = Receiver(ca_file=ca_file, token=token)
        self.root = root
        self.per_host = per_host
        self.max_attempts = max_attempts
        self.token = token
        self.progress = progress or (lambda n: None)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.per_host)
        )

    def final_path(self, row: FileRow) -> Path:
        path = (self.root / row.rel_path).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{row.rel_path} leaves the data root")
        return path

    def ranked(self, urls: list[str]) -> list[str]:
        stats = self.state.host_stats()
        now = time.time()

        def score(url: str) -> float:
            nbytes, seconds, failures, last_failure = stats.get(host_of(url), (0, 0.0, 0, None))
            speed = nbytes / seconds if seconds > 0 else UNKNOWN_SPEED
            recent = last_failure is not None and now - last_failure < FAILURE_MEMORY_SECONDS
            return speed / (1 + failures * (4 if recent else 1))

        return sorted(urls, key=score, reverse=True)

    async def fetch(self, row: FileRow) -> Outcome:
        final = self.final_path(row)
        # placed by an earlier run that was killed before it could record it
        if (
            final.exists()
            and final.stat().st_size == row.size
            and await asyncio.to_thread(_digest_of, final, row.checksum_type) == row.checksum
        ):
            return Outcome(True, row.source, row.errors, row.attempts)
        part = final.with_name(final.name + ".part")
        final.parent.mkdir(parents=True, exist_ok=True)
        errors = list(row.errors)
        attempts = row.attempts
        bad: set[str] = set()  # sources that sent wrong bytes for this file
        while attempts < self.max_attempts:
            sources = [u for u in self.ranked(row.sources) if u not in bad]
            if not sources:
                break
            for url in sources:
                if attempts >= self.max_attempts:
                    break
                attempts += 1
                host = host_of(url)
                try:
                    async with self._slots[host]:
                        nbytes, seconds = await asyncio.get_running_loop().run_in_executor(
                            self._pool, self._attempt, url, row, part
                        )
                except SourceFailed as exc:
                    errors.append(f"attempt {attempts}: {exc}")
                    self.state.host_failure(host)
                    self.state.file_attempted(row.file_id, attempts, errors)
                    if not exc.keep_partial:
                        bad.add(url)
                    log.warning("download attempt failed", extra={"file": row.file_id,
                                "source": host, "reason": exc.reason})  # fmt: skip
                    continue
                self.state.host_transfer(host, nbytes, seconds)
                os.replace(part, final)
                return Outcome(True, url, errors, attempts, nbytes)
            await asyncio.sleep(min(2.0, 0.2 * attempts))
        part.unlink(missing_ok=True)
        return Outcome(False, None, errors or ["no data node serves this file"], attempts)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.receiver.close()

    def _attempt(self, url: str, row: FileRow, part: Path) -> tuple[int, float]:
        host = host_of(url)
        algorithm = HASHES.get(row.checksum_type)
        if algorithm is None:
            raise SourceFailed(
                host, f"unknown checksum type {row.checksum_type}", keep_partial=False
            )
        offset = part.stat().st_size if part.exists() else 0
        if offset > row.size:
            part.unlink()
            offset = 0
        hasher = algorithm()
        if offset:
            _hash_into(hasher, part, offset)
        began = time.monotonic()
        try:
            r = self.receiver.receive(
                url, part, offset=offset, hasher=hasher, new_hasher=algorithm,
                progress=self.progress,
            )  # fmt: skip
        except ReceiveError as exc:
            raise SourceFailed(host, str(exc)) from None
        if not r.accepted and not (r.status == 416 and offset == row.size):
            # 416 with a whole partial file: nothing more to send; it is verified below
            raise SourceFailed(host, f"HTTP {r.status} for {urlsplit(url).path}")
        received, hasher = r.received, r.hasher
        size = part.stat().st_size if part.exists() else 0
        if size != row.size:
            # a short read (the node died mid-transfer) keeps what arrived, for the next source
            raise SourceFailed(
                host, f"got {size} of {row.size} bytes", keep_partial=size < row.size
            )
        digest = hasher.hexdigest()
        if digest != row.checksum:
            part.unlink(missing_ok=True)
            raise SourceFailed(
                host, f"{row.checksum_type} mismatch: got {digest}, want {row.checksum}",
                keep_partial=False,
            )  # fmt: skip
        return received, max(time.monotonic() - began, 1e-6)


def _hash_into(hasher: Any, path: Path, limit: int) -> None:
    with open(path, "rb") as f:
        left = limit
        while left > 0:
            chunk = f.read(min(CHUNK * 4, left))
            if not chunk:
                break
            hasher.update(chunk)
            left -= len(chunk)


def _digest_of(path: Path, checksum_type: str) -> str:
    hasher = HASHES.get(checksum_type, hashlib.sha256)()
    _hash_into(hasher, path, path.stat().st_size)
    return str(hasher.hexdigest())
