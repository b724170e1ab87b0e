"""Find the netCDF files under the given paths and inspect each one: DRS path, header,
checksum. Files are grouped into dataset versions; a dataset version with any bad file is
reported whole and never published (no half-published dataset).

Header reading and hashing run in worker processes when there are many files: netCDF/HDF5
reading holds the GIL, and two cores read headers twice as fast as one.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from esgf_ha.publisher.checksums import file_checksum
from esgf_ha.publisher.drs_path import (
    DRSPath,
    Root,
    check_file_name,
    check_target,
    parse_drs_path,
)
from esgf_ha.publisher.errors import DRSMismatch, FileProblem, PublisherError, Unreadable
from esgf_ha.publisher.header import (
    Header,
    check_against_path,
    read_header,
    tracking_id_problems,
)
from esgf_ha.publisher.mapfile import MapLine

PARALLEL_FROM = 64  # below this many files a worker pool costs more than it saves


@dataclass
class ScannedFile:
    drs: DRSPath
    size: int
    mtime: float
    checksum: str
    checksum_type: str
    header: Header


@dataclass(frozen=True)
class FileWarning:
    """Something a data manager should know about a file that is published all the same."""

    path: str
    kind: str
    message: str


@dataclass
class DatasetVersion:
    drs: DRSPath  # of its first file: project, facets, version, root
    files: list[ScannedFile] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    warnings: list[FileWarning] = field(default_factory=list)

    @property
    def instance_id(self) -> str:
        return f"{self.drs.master_id}.v{self.drs.version}"


@dataclass
class ScanResult:
    datasets: list[DatasetVersion]
    problems: list[FileProblem]  # files that belong to no dataset (not DRS, outside the roots)

    @property
    def all_problems(self) -> list[FileProblem]:
        return self.problems + [p for d in self.datasets for p in d.problems]


@dataclass(frozen=True)
class _Job:
    path: Path
    known: MapLine | None
    full: bool = True  # read the header whole (the first file of each directory)
    time: bool = True  # read the time axis (the first and last file of each directory)


def iter_netcdf(paths: Iterable[Path]) -> Iterator[Path | FileProblem]:
    """Every `*.nc` file under the paths (directory links such as `latest` are not followed)."""
    for path in paths:
        path = Path(path).absolute()
        if path.is_dir():
            found = False
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.endswith(".nc") and not name.startswith("."):
                        found = True
                        yield Path(dirpath) / name
            if not found:  # most likely a wrong path: say so rather than publish nothing
                yield Unreadable(str(path), "holds no *.nc files")
        elif path.exists() or path.is_symlink():
            yield path
        else:
            yield Unreadable(str(path), "no such file or directory")


def inspect(
    job: _Job, roots: list[Root], project: str, checksum_type: str
) -> tuple[DRSPath | None, ScannedFile | FileProblem]:
    drs: DRSPath | None = None
    try:
        drs = parse_drs_path(job.path, roots, project)
        # from here on a problem belongs to the dataset version, which then fails whole
        check_file_name(drs)
        check_target(drs)
        try:
            stat = job.path.stat()
        except OSError as exc:
            raise Unreadable(str(job.path), f"cannot be read: {exc.strerror}") from None
        known = job.known
        if known is not None:
            if (drs.master_id, drs.version) != (known.master_id, known.version):
                raise DRSMismatch(
                    str(job.path),
                    f"the mapfile lists it in {known.master_id}.v{known.version}, its path "
                    f"says {drs.master_id}.v{drs.version}",
                )
            if stat.st_size != known.size:
                raise Unreadable(
                    str(job.path),
                    f"changed since the mapfile was written (size {stat.st_size}, "
                    f"mapfile {known.size}); write the mapfile again",
                )
        if known is not None and known.tracking_id and not (job.full or job.time):
            # a mapfile line with a tracking_id: the file was checked when the mapfile was
            # written, and its size (above) still matches, so it need not be opened again
            problems = tracking_id_problems(drs, known.tracking_id)
            if problems:
                raise DRSMismatch(str(job.path), "; ".join(problems) + " (in the mapfile)")
            header = Header({"tracking_id": known.tracking_id}, full=False)
        else:
            header = read_header(job.path, drs.variable, full=job.full, time=job.time)
            check_against_path(drs, header)
            in_file = str(header.attrs.get("tracking_id"))
            if known is not None and known.tracking_id and known.tracking_id != in_file:
                raise DRSMismatch(
                    str(job.path),
                    f"the mapfile's tracking_id {known.tracking_id} differs from the file's "
                    f"{in_file}; write the mapfile again",
                )
        if known is not None and known.checksum:
            checksum, kind = known.checksum, known.checksum_type or "SHA256"
        else:
            kind = checksum_type.upper()
            try:
                checksum = file_checksum(job.path, kind)
            except OSError as exc:
                raise Unreadable(str(job.path), f"cannot be read: {exc.strerror}") from None
        mtime = known.mtime if known is not None and known.mtime is not None else stat.st_mtime
        return drs, ScannedFile(drs, stat.st_size, mtime, checksum, kind, header)
    except FileProblem as problem:
        return drs, problem


def _inspect_star(args: tuple[_Job, list[Root], str, str]) -> tuple[DRSPath | None, object]:
    return inspect(*args)


def _exit_with_parent(parent: int) -> None:
    """Worker processes end when the publisher does, even when it is killed (SIGKILL leaves
    them waiting on a queue whose other end they hold themselves)."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _results(
    args: list[tuple[_Job, list[Root], str, str]], jobs: int
) -> Iterator[tuple[DRSPath | None, object]]:
    """Inspection results in input order, from worker processes while the caller goes on
    (the publisher uploads finished datasets while later files are still being read)."""
    if jobs <= 1 or len(args) < PARALLEL_FROM:
        yield from map(_inspect_star, args)
        return
    # spawn: the parent may run threads (progress display), which fork would copy
    pool = ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )
    finished = False
    try:
        chunk = max(1, min(64, len(args) // (jobs * 8)))
        results = pool.map(_inspect_star, args, chunksize=chunk)
        try:
            first = next(results, None)
        except BrokenProcessPool:
            # workers could not start (e.g. a __main__ that cannot be re-imported): go on here
            yield from map(_inspect_star, args)
            return
        if first is not None:
            yield first
        try:
            yield from results
        except BrokenProcessPool as exc:
            raise PublisherError(f"a file-reading worker process died: {exc}") from None
        finished = True
    finally:
        # all done: let the workers exit cleanly; stopped early: drop the queued files
        pool.shutdown(wait=finished, cancel_futures=not finished)


def scan_iter(
    items: Iterable[Path | MapLine],
    roots: list[Root],
    *,
    project: str = "auto",
    checksum_type: str = "SHA256",
    jobs: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_file: Callable[[], None] | None = None,
) -> Iterator[DatasetVersion | FileProblem]:
    """Inspect paths (files or directories) or mapfile lines (no checksum is computed then);
    yield each dataset version as soon as all its files are read, and each file problem
    that belongs to no dataset."""
    work: list[_Job] = []
    for item in items:
        if isinstance(item, MapLine):
            work.append(_Job(item.path, item))
            continue
        for found in iter_netcdf([item]):
            if isinstance(found, FileProblem):
                yield found
            else:
                work.append(_Job(found, None))
    # sorted paths keep each version directory's files together, so a dataset version is
    # complete when the next one starts; overlapping paths (`CMIP6` and `CMIP6/CMIP/NCAR`)
    # or a mapfile line given twice name a file once
    work = sorted(dict.fromkeys(work), key=lambda job: str(job.path))
    # file names end with their time range, so sorted files of a directory are in time
    # order: its first and last file give the directory's time extent
    for i, job in enumerate(work):
        first = i == 0 or work[i - 1].path.parent != job.path.parent
        last = i == len(work) - 1 or work[i + 1].path.parent != job.path.parent
        work[i] = _Job(job.path, job.known, full=first, time=first or last)
    if on_total is not None:
        on_total(len(work))
    args = [(job, roots, project, checksum_type) for job in work]
    current: DatasetVersion | None = None
    done: set[tuple[str, str, str]] = set()
    for drs, outcome in _results(args, jobs or os.cpu_count() or 1):
        if on_file is not None:
            on_file()
        if drs is None:
            assert isinstance(outcome, FileProblem)
            yield outcome
            continue
        key = (drs.project.name, drs.master_id, drs.version)
        if current is None or key != (
            current.drs.project.name,
            current.drs.master_id,
            current.drs.version,
        ):
            if current is not None:
                yield _finish(current)
            if key in done:
                yield DRSMismatch(
                    str(drs.path), "its dataset version was also found in another directory"
                )
                current = None
                continue
            done.add(key)
            current = DatasetVersion(drs)
        if isinstance(outcome, ScannedFile):
            current.files.append(outcome)
        else:
            assert isinstance(outcome, FileProblem)
            current.problems.append(outcome)
    if current is not None:
        yield _finish(current)


def _finish(ds: DatasetVersion) -> DatasetVersion:
    ds.files.sort(key=lambda f: f.drs.rel)
    _check_files_agree(ds)
    return ds


def scan(
    items: Iterable[Path | MapLine],
    roots: list[Root],
    *,
    project: str = "auto",
    checksum_type: str = "SHA256",
    jobs: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_file: Callable[[], None] | None = None,
) -> ScanResult:
    """All of `scan_iter` at once."""
    result = ScanResult([], [])
    for found in scan_iter(
        items,
        roots,
        project=project,
        checksum_type=checksum_type,
        jobs=jobs,
        on_total=on_total,
        on_file=on_file,
    ):
        if isinstance(found, FileProblem):
            result.problems.append(found)
        else:
            result.datasets.append(found)
    return result


def _check_files_agree(ds: DatasetVersion) -> None:
    """Files of one dataset version that share a tracking_id.

    Published CMIP6 data has them (time-split files written from one source file whose
    tracking_id was kept). The federation holds such versions, so they are published, with a
    warning (esgcet 5.5.3 refuses them, which leaves a site unable to publish them at all).
    The same file twice (same tracking_id, size and checksum: a copy under another name)
    would publish the same data twice, and is refused."""
    seen: dict[str, ScannedFile] = {}
    paths: set[Path] = set()
    for f in ds.files:
        if f.drs.path in paths:
            ds.problems.append(
                DRSMismatch(str(f.drs.path), "is listed twice, with different mapfile values")
            )
            continue
        paths.add(f.drs.path)
        tid = str(f.header.attrs.get("tracking_id", ""))
        other = seen.setdefault(tid, f)
        if other is f:
            continue
        if (f.size, f.checksum, f.checksum_type) == (
            other.size,
            other.checksum,
            other.checksum_type,
        ):
            ds.problems.append(
                DRSMismatch(
                    str(f.drs.path),
                    f"is a copy of {other.drs.path} (same tracking_id, size and checksum)",
                )
            )
        else:
            ds.warnings.append(
                FileWarning(
                    str(f.drs.path),
                    "DuplicateTrackingId",
                    f"has the same tracking_id {tid} as {other.drs.name} of the same dataset "
                    "version; both are published, but that tracking_id cannot tell them apart",
                )
            )
