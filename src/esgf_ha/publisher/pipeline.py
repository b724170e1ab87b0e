"""`esgf-ha publish`: scan (or read mapfiles), build records, send atomic batches, report.

Several dataset versions travel in one request (one round trip for many small datasets), and
the master commits each request whole. If the master refuses a request, its datasets are sent
again one per request, so one bad dataset cannot hold back the others, and each dataset is
still published whole or not at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from esgf_ha.publisher.assemble import dataset_records
from esgf_ha.publisher.client import IndexClient
from esgf_ha.publisher.drs_path import Root
from esgf_ha.publisher.errors import FileProblem, Rejected, Unreachable
from esgf_ha.publisher.mapfile import MapLine
from esgf_ha.publisher.scan import DatasetVersion, scan_iter

Entry = dict[str, object]


@dataclass
class PublishSettings:
    data_node: str
    index_node: str
    roots: list[Root]
    project: str = "auto"
    checksum_type: str = "SHA256"
    opendap: bool = False
    url_base: str | None = None
    jobs: int | None = None
    batch_files: int = 2000  # files per request: small enough to overlap reading and sending


@dataclass
class Report:
    published: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"dataset", "error"}
    file_errors: list[dict[str, str]] = field(default_factory=list)  # {"path", "kind", "error"}
    warnings: list[dict[str, str]] = field(default_factory=list)  # {"path", "kind", "warning"}
    files: int = 0
    seconds: float = 0.0
    scan_seconds: float = 0.0
    dry_run: bool = False
    interrupted: bool = False  # stopped (SIGTERM) before every file was read
    entries: list[Entry] = field(default_factory=list)  # what was (or would be) sent

    @property
    def ok(self) -> bool:
        return not self.failed and not self.file_errors and not self.interrupted

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "datasets": len(self.published) + len(self.unchanged) + len(self.failed),
            "files": self.files,
            "published": self.published,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "file_errors": self.file_errors,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "scan_seconds": round(self.scan_seconds, 3),
        }


@dataclass
class Hooks:
    """Progress callbacks (the CLI draws bars with them)."""

    scan_total: Callable[[int], None] | None = None
    scan_file: Callable[[], None] | None = None
    upload_done: Callable[[int], None] | None = None  # number of files sent


def _file_error(report: Report, problem: FileProblem) -> None:
    report.file_errors.append({"path": problem.path, "kind": problem.kind, "error": problem.reason})


def build_entry(ds: DatasetVersion, settings: PublishSettings, report: Report) -> Entry | None:
    """The batch entry of one dataset version, or None (and the reasons in the report)."""
    for problem in ds.problems:
        _file_error(report, problem)
    for warning in ds.warnings:
        report.warnings.append(
            {"path": warning.path, "kind": warning.kind, "warning": warning.message}
        )
    if ds.problems or not ds.files:
        report.failed.append(
            {
                "dataset": f"{ds.instance_id}|{settings.data_node}",
                "error": f"not published: {len(ds.problems)} of its files have errors",
            }
        )
        return None
    dataset, files = dataset_records(
        ds,
        data_node=settings.data_node,
        index_node=settings.index_node,
        url_base=settings.url_base,
        opendap=settings.opendap,
    )
    report.files += len(files)
    return {"dataset": dataset, "files": files}


def _chunks(entries: list[Entry], max_files: int) -> Iterable[list[Entry]]:
    chunk: list[Entry] = []
    count = 0
    for entry in entries:
        n = _nfiles([entry])
        if chunk and count + n > max_files:
            yield chunk
            chunk, count = [], 0
        chunk.append(entry)
        count += n
    if chunk:
        yield chunk


def _dataset_id(entry: Entry) -> str:
    return str(cast(dict[str, object], entry["dataset"])["id"])


def _nfiles(entries: list[Entry]) -> int:
    return sum(len(cast(list[object], e["files"])) for e in entries)


def _ids(outcome: dict[str, object], key: str) -> list[str]:
    return [str(x) for x in cast(list[object], outcome.get(key, []))]


class Uploader:
    """Sends entries in requests of up to `batch_files` files as they come."""

    def __init__(
        self, client: IndexClient, settings: PublishSettings, report: Report, hooks: Hooks
    ) -> None:
        self.client, self.settings, self.report, self.hooks = client, settings, report, hooks
        self.pending: list[Entry] = []
        self.stopped: str | None = None  # why nothing more is sent

    def add(self, entry: Entry) -> None:
        if self.stopped is not None:
            self.report.failed.append({"dataset": _dataset_id(entry), "error": self.stopped})
            return
        self.pending.append(entry)
        if _nfiles(self.pending) >= self.settings.batch_files:
            self.flush()

    def flush(self) -> None:
        chunk, self.pending = self.pending, []
        if chunk:
            self._send(chunk)

    def _fail(self, chunk: list[Entry], error: str) -> None:
        for entry in chunk:
            self.report.failed.append({"dataset": _dataset_id(entry), "error": error})

    def _send(self, chunk: list[Entry]) -> None:
        report = self.report
        try:
            outcome = self.client.publish(chunk)
        except Unreachable as exc:
            # every later request would wait out the same retries: stop and say so
            self.stopped = str(exc)
            self._fail(chunk, str(exc))
            return
        except Rejected as exc:
            if exc.status in (401, 403):
                self.stopped = str(exc)
                self._fail(chunk, str(exc))
                return
            for entry in chunk:  # find which dataset the master refused
                try:
                    single = self.client.publish([entry])
                except (Rejected, Unreachable) as err:
                    self._fail([entry], str(err))
                    continue
                report.published += _ids(single, "published")
                report.unchanged += _ids(single, "unchanged")
        else:
            report.published += _ids(outcome, "published")
            report.unchanged += _ids(outcome, "unchanged")
        if self.hooks.upload_done is not None:
            self.hooks.upload_done(_nfiles(chunk))


def run(
    items: Iterable[Path | MapLine],
    settings: PublishSettings,
    client: IndexClient | None,
    *,
    hooks: Hooks | None = None,
    stop: threading.Event | None = None,
) -> Report:
    """Publish files or mapfile lines; `client=None` is a dry run (nothing is sent).

    Once `stop` is set, no further file is read: the dataset versions already read are still
    sent (each is one atomic batch, so the master never holds part of one) and the report
    says it was interrupted; running again publishes the rest."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    report = Report(dry_run=client is None)
    uploader = Uploader(client, settings, report, hooks) if client is not None else None
    for found in scan_iter(
        items,
        settings.roots,
        project=settings.project,
        checksum_type=settings.checksum_type,
        jobs=settings.jobs,
        on_total=hooks.scan_total,
        on_file=hooks.scan_file,
    ):
        if stop is not None and stop.is_set():
            report.interrupted = True
            break
        if isinstance(found, FileProblem):
            _file_error(report, found)
            continue
        entry = build_entry(found, settings, report)
        if entry is None:
            continue
        if uploader is None:
            report.entries.append(entry)
        else:
            # sent while the worker processes read the next files
            uploader.add(entry)
    report.scan_seconds = time.monotonic() - started
    if uploader is not None:
        uploader.flush()
    report.seconds = time.monotonic() - started
    return report
