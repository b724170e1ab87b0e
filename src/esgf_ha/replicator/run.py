"""One replication pass (`--once`) or a replicator that keeps following the master (`--follow`):
find work, fetch and verify files, publish complete dataset versions as replicas, and act on
retractions and newer versions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from esgf_ha.common.index_client import AsyncIndexClient, IndexClientError, IndexRefused
from esgf_ha.common.retry import Backoff
from esgf_ha.replicator.discover import DatasetPlan, IndexClient, find_work
from esgf_ha.replicator.download import Fetcher
from esgf_ha.replicator.errors import IndexUnavailable, PublishRefused
from esgf_ha.replicator.records import data_node_of, replica_batch
from esgf_ha.replicator.selection import Selection
from esgf_ha.replicator.state import FileRow, State

log = logging.getLogger("esgf_ha.replicator")


@dataclass
class ReplicatorConfig:
    state_dir: Path
    index_url: str  # where to search (the master or a nearby replica)
    master_url: str  # where to publish replica records
    token: str | None
    site: str
    root_name: str
    root_path: Path
    data_node_url: str  # this site's data node, as its records' URLs name it
    selection: Selection
    concurrency: int = 8
    per_host: int = 4
    max_attempts: int = 5
    poll_seconds: float = 30.0
    on_retract: Literal["quarantine", "remove"] = "quarantine"
    remove_old_versions: bool = False
    verify: ssl.SSLContext | bool = True
    ca_file: Path | None = None  # the same CA bundle as `verify`, for the file transfers


@dataclass
class PassSummary:
    queued: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=dict)
    retracted: list[str] = field(default_factory=list)
    removed_old: list[str] = field(default_factory=list)
    files_done: int = 0
    files_failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent in each step

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_json(self) -> dict[str, object]:
        return {**self.__dict__, "ok": self.ok}


class Replicator:
    def __init__(
        self, config: ReplicatorConfig, progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.config = config
        self.state = State(config.state_dir)
        self.data_node = data_node_of(config.data_node_url)
        # progress(total_bytes_to_fetch, bytes_just_received)
        self.progress = progress or (lambda total, n: None)
        self._total = 0

    # -- one pass ------------------------------------------------------------------------------
    async def run_once(self) -> PassSummary:
        began = time.monotonic()
        summary = PassSummary()
        async with self._index() as searched, self._master() as master:
            index = IndexClient(searched)
            step = time.monotonic()

            def lap(name: str) -> None:
                nonlocal step
                now = time.monotonic()
                summary.phases[name] = round(now - step, 3)
                step = now

            plans = await find_work(
                index, self.config.selection, self.data_node, skip=self.state.known()
            )
            for plan in plans:
                if self._queue(plan):
                    summary.queued.append(plan.instance_id)
            lap("discover")
            await self._fetch_all(summary)
            lap("fetch")
            await self._publish_complete(master, summary)
            lap("publish")
            await self._handle_retractions(index, master, summary)
            if self.config.remove_old_versions:
                await self._remove_old_versions(master, summary)
            lap("retractions")
        summary.seconds = round(time.monotonic() - began, 3)
        log.info("pass finished", extra={"phases": summary.phases, "bytes": summary.bytes})
        return summary

    def _index(self) -> AsyncIndexClient:
        """Where work is searched for: the master or a nearby replica."""
        return AsyncIndexClient(
            self.config.index_url,
            verify=self.config.verify,
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=self.config.concurrency + 2),
            on_retry=_retrying,
        )

    def _master(self) -> AsyncIndexClient:
        """Where replica records are published, retracted and deleted, with our token."""
        return AsyncIndexClient(
            self.config.master_url,
            token=self.config.token,
            verify=self.config.verify,
            timeout=httpx.Timeout(30.0, connect=5.0),
            on_retry=_retrying,
        )

    def _queue(self, plan: DatasetPlan) -> bool:
        files = [
            (f.file_id, f.rel_path, f.size, f.checksum, f.checksum_type, f.sources, f.record)
            for f in plan.files
        ]
        added = self.state.add_dataset(plan.record, files)
        if added:
            log.info("queued", extra={"instance_id": plan.instance_id, "files": len(files)})
        return added

    async def _fetch_all(self, summary: PassSummary) -> None:
        todo = [
            row
            for instance, *_ in self.state.datasets("queued")
            for row in self.state.files(instance, "queued")
        ]
        self._total = sum(r.size for r in todo)
        if not todo:
            return
        fetcher = Fetcher(
            self.state,
            self.config.root_path,
            per_host=self.config.per_host,
            max_attempts=self.config.max_attempts,
            token=self.config.token,
            progress=lambda n: self.progress(self._total, n),
            workers=self.config.concurrency,
            ca_file=self.config.ca_file,
        )
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(row: FileRow) -> None:
            async with gate:
                outcome = await fetcher.fetch(row)
            if outcome.ok:
                self.state.file_done(row.file_id, outcome.source or "", outcome.attempts,
                                     outcome.errors)  # fmt: skip
                summary.files_done += 1
                summary.bytes += outcome.nbytes
            else:
                self.state.file_failed(row.file_id, outcome.attempts, outcome.errors)
                summary.files_failed += 1
                log.error("file failed for good", extra={"file": row.file_id,
                          "errors": outcome.errors[-3:]})  # fmt: skip

        try:
            await asyncio.gather(*(one(row) for row in todo))
        finally:
            fetcher.close()

    async def _publish_complete(self, client: AsyncIndexClient, summary: PassSummary) -> None:
        for instance, _, status, record, _ in self.state.datasets("queued", "complete"):
            rows = self.state.files(instance)
            failed = [r for r in rows if r.status == "failed"]
            if failed:
                reasons = [f"{r.file_id}: {r.errors[-1] if r.errors else 'failed'}" for r in failed]
                self.state.set_dataset(instance, "failed", error="; ".join(reasons)[:2000])
                summary.failed[instance] = reasons
                continue
            if any(r.status != "done" for r in rows):
                continue
            if status == "queued":
                self.state.set_dataset(instance, "complete")
            batch = replica_batch(
                record,
                [(r.rel_path, r.record) for r in rows],
                data_node_url=self.config.data_node_url,
                root_name=self.config.root_name,
            )
            try:
                await self._post(client, "/api/v1/publish", batch)
            except (PublishRefused, IndexUnavailable) as exc:
                summary.failed[instance] = [str(exc)]
                log.error("replica records not published", extra={"instance_id": instance,
                          "reason": str(exc)})  # fmt: skip
                continue
            rid = f"{instance}|{self.data_node}"
            self.state.set_dataset(instance, "published", replica_id=rid)
            summary.published.append(instance)
            log.info("published replica", extra={"instance_id": instance, "id": rid})

    async def _post(self, client: AsyncIndexClient, path: str, body: object) -> dict:
        try:
            answer: dict = await client.post_json(path, body)
        except IndexRefused as exc:
            raise PublishRefused(str(exc)) from None
        except IndexClientError as exc:
            raise IndexUnavailable(str(exc)) from None
        return answer

    # -- retractions and newer versions ----------------------------------------------------------
    async def _handle_retractions(
        self, index: IndexClient, client: AsyncIndexClient, summary: PassSummary
    ) -> None:
        mine = self.state.datasets("queued", "complete", "published", "failed")
        for start in range(0, len(mine), 50):
            chunk = mine[start : start + 50]
            retracted = await index.search(
                [("type", "Dataset"), ("retracted", "true"), ("fields", "instance_id"),
                 *(("instance_id", row[0]) for row in chunk)]
            )  # fmt: skip
            for instance in sorted({str(r["instance_id"]) for r in retracted}):
                row = next(r for r in chunk if r[0] == instance)
                await self._withdraw(client, instance, row[4], summary)

    async def _withdraw(
        self, client: AsyncIndexClient, instance: str, rid: str | None, summary: PassSummary
    ) -> None:
        for row in self.state.files(instance):
            path = self.config.root_path / row.rel_path
            part = path.with_name(path.name + ".part")
            part.unlink(missing_ok=True)
            if not path.exists():
                continue
            if self.config.on_retract == "quarantine":
                target = self.config.state_dir / "quarantine" / row.rel_path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
            else:
                path.unlink()
        if rid:
            with contextlib.suppress(PublishRefused):  # already retracted or never published
                await self._post(client, "/api/v1/retract", {"ids": [rid]})
        self.state.set_dataset(instance, "retracted")
        summary.retracted.append(instance)
        log.warning("retracted upstream: withdrawn here", extra={"instance_id": instance,
                    "files": self.config.on_retract})  # fmt: skip

    async def _remove_old_versions(self, client: AsyncIndexClient, summary: PassSummary) -> None:
        published = self.state.datasets("published")
        newest: dict[str, str] = {}
        for _, master_id, _, record, _ in published:
            version = str(record.get("version", ""))
            if version > newest.get(master_id, ""):
                newest[master_id] = version
        for instance, master_id, _, record, rid in published:
            if str(record.get("version", "")) >= newest[master_id]:
                continue
            for row in self.state.files(instance):
                (self.config.root_path / row.rel_path).unlink(missing_ok=True)
            if rid:
                with contextlib.suppress(PublishRefused):
                    await self._post(client, "/api/v1/delete", {"ids": [rid]})
            self.state.set_dataset(instance, "removed")
            summary.removed_old.append(instance)

    # -- following -----------------------------------------------------------------------------
    async def wait_for_change(self) -> None:
        """Until the master's change log moves (long-poll), or `poll_seconds` at most; then
        until the index we search has applied that change too (a replica may trail by a
        moment, and searching it before would miss what just woke us)."""
        since = self.state.get_meta("change_seq")
        wait = min(self.config.poll_seconds, 60.0)
        once = Backoff(retries=0)  # a failed poll is followed by the next one
        try:
            async with self._master() as master:
                if since is None:
                    body = await master.get_json(
                        "/api/v1/changes", {"since": 0, "limit": 0, "wait": 0}, retry=once
                    )
                    since = str(_last_seq(body) or 0)
                body = await master.get_json(
                    "/api/v1/changes",
                    {"since": since, "limit": 1, "wait": wait},
                    retry=once,
                    timeout=wait + 10,
                )
                seq = _last_seq(body)
                if seq is None:
                    await asyncio.sleep(wait)
                    return
                self.state.set_meta("change_seq", str(seq))
            await self._index_reaches(seq)
        except IndexRefused:
            await asyncio.sleep(wait)
        except IndexClientError:
            await asyncio.sleep(min(wait, 5.0))

    async def _index_reaches(self, seq: int, timeout: float = 10.0) -> None:
        if self.config.index_url.rstrip("/") == self.config.master_url.rstrip("/"):
            return
        deadline = time.monotonic() + timeout
        async with self._index() as index:
            while time.monotonic() < deadline:
                _, body = await index.readiness()
                try:
                    if int(body.get("seq", 0)) >= seq:
                        return
                except (ValueError, TypeError):
                    return
                await asyncio.sleep(0.1)

    def close(self) -> None:
        self.state.close()


def _retrying(message: str) -> None:
    log.warning("index request failed, retrying", extra={"problem": message})


def _last_seq(body: object) -> int | None:
    if isinstance(body, dict):
        for key in ("last_seq", "seq"):
            if isinstance(body.get(key), int):
                return int(body[key])
    return None
