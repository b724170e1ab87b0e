"""`esgf-ha publish`: scan netCDF files (or read mapfiles) and publish them to the master."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from esgf_ha.cli.options import index_options, parse_root_list
from esgf_ha.publisher.client import IndexClient
from esgf_ha.publisher.errors import MapfileError, PublisherError
from esgf_ha.publisher.mapfile import MapLine, read_mapfile
from esgf_ha.publisher.pipeline import Hooks, PublishSettings, Report, run

# soft_wrap: one message, one line, whatever the width (scripts grep these lines)
stderr = Console(stderr=True, soft_wrap=True)


def make_client(
    index_url: str, token: str | None, cert: Path | None, cacert: Path | None, retries: int
) -> IndexClient:
    """The client every publishing command uses; credentials and CA problems become usage
    errors here, before any file is scanned."""
    if not token and cert is None:
        raise click.UsageError("give --token (or ESGF_HA_TOKEN) or --cert to publish")
    try:
        return IndexClient(
            index_url,
            token=token,
            cert=cert,
            cacert=cacert,
            retries=retries,
            on_retry=lambda message: stderr.print(f"[yellow]{message}[/]", highlight=False),
        )
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def progress_hooks(enabled: bool) -> Iterator[Hooks]:
    """Progress bars on stderr for the scan and the upload, so stdout stays the report a
    script can parse; disabled, the pipeline gets hooks that do nothing."""
    if not enabled:
        yield Hooks()
        return
    progress = Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeElapsedColumn(),
        console=stderr,
        transient=not stderr.is_terminal,
    )
    scan_task = progress.add_task("scan", total=None)
    upload_task = progress.add_task("upload", total=None, visible=False)

    def totals(n: int) -> None:
        progress.update(scan_task, total=n)
        progress.update(upload_task, total=n, visible=True)

    hooks = Hooks(
        scan_total=totals,
        scan_file=lambda: progress.advance(scan_task),
        upload_done=lambda n: progress.advance(upload_task, n),
    )
    with progress:
        yield hooks


def print_report(report: Report, as_json: bool) -> None:
    """Problems file by file on stderr, then the summary (or JSON) on stdout."""
    for warn in report.warnings:
        stderr.print(
            f"[yellow]warning[/] {warn['kind']}: {warn['path']}: {warn['warning']}",
            highlight=False,
        )
    for err in report.file_errors:
        stderr.print(f"[red]error[/] {err['kind']}: {err['path']}: {err['error']}", highlight=False)
    for fail in report.failed:
        stderr.print(f"[red]failed[/] {fail['dataset']}: {fail['error']}", highlight=False)
    if report.interrupted:
        stderr.print(
            "[yellow]stopped[/] by SIGTERM after sending what was read: run again to publish "
            "the rest",
            highlight=False,
        )
    if as_json:
        summary = report.as_dict()
        if report.dry_run:
            summary["records"] = report.entries
        click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    elif report.dry_run:
        click.echo(orjson.dumps({"datasets": report.entries}, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(
            f"published {len(report.published)}, unchanged {len(report.unchanged)}, "
            f"failed {len(report.failed)} dataset versions ({report.files} files, "
            f"{len(report.file_errors)} file errors, {len(report.warnings)} warnings) "
            f"in {report.seconds:.1f} s"
        )


@click.command(
    epilog="""\b
Examples:
  esgf-ha sample-data /tmp/data --project CMIP6 --datasets 4
  TOKEN=$(esgf-ha token issue --state-dir state/master --scope esgf:publish)
  esgf-ha publish --index http://127.0.0.1:8080 --token $TOKEN \\
      --data-node esgf-data.example.org --root esg_dataroot=/tmp/data /tmp/data/CMIP6
  esgf-ha publish ... --mapfile CMIP6.CMIP.NCAR.CESM2.historical.r1i1p1f1.Amon.tas.gn.v20190308.map
  esgf-ha publish --dry-run --data-node dn.example.org --root esg_dataroot=/tmp/data /tmp/data
  esgf-ha publish ... --json /tmp/data > summary.json    # exit status 0 only if all published
""",
)
@index_options(required=False)
@click.option(
    "--data-node",
    required=True,
    help="HOST[:PORT] of the data node serving the files (in ids and URLs)",
)
@click.option("--index-node", help="index_node field of the records [default: host of --index]")
@click.option(
    "--root",
    "roots",
    multiple=True,
    required=True,
    help="NAME=PATH: a data root and its name in the file URLs (repeatable)",
)
@click.option(
    "--project",
    type=click.Choice(["auto", "CMIP5", "CMIP6"], case_sensitive=False),
    default="auto",
    show_default=True,
    help="DRS of the files; auto: from the first directory below the root",
)
@click.option(
    "--mapfile",
    "mapfiles",
    multiple=True,
    type=click.Path(path_type=Path),
    help="publish the files of this mapfile, with its checksums (repeatable)",
)
@click.option(
    "--checksum-type",
    type=click.Choice(["SHA256", "MD5"], case_sensitive=False),
    default="SHA256",
    show_default=True,
    help="checksum computed while scanning (MD5 only for legacy CMIP5 sites)",
)
@click.option("--opendap", is_flag=True, help="also advertise an OPENDAP url per file")
@click.option("--url-base", help="file URL prefix [default: https://<data-node>]")
@click.option("--jobs", type=int, help="worker processes for reading files [default: cores]")
@click.option(
    "--batch-files", default=2000, show_default=True, help="most files sent in one request"
)
@click.option("--dry-run", is_flag=True, help="scan and print the records; send nothing")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
@click.option("--no-progress", is_flag=True, help="no progress bars on stderr")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def publish(
    index_url: str | None,
    token: str | None,
    cert: Path | None,
    cacert: Path | None,
    data_node: str,
    index_node: str | None,
    roots: tuple[str, ...],
    project: str,
    mapfiles: tuple[Path, ...],
    checksum_type: str,
    opendap: bool,
    url_base: str | None,
    jobs: int | None,
    batch_files: int,
    retries: int,
    dry_run: bool,
    as_json: bool,
    no_progress: bool,
    paths: tuple[Path, ...],
) -> None:
    """Scan netCDF files under PATH... (or read --mapfile) and publish each dataset version,
    with all its files, as one atomic batch to the master index.

    DRS facets come from the path and the global attributes, checked against each other.
    A dataset version with any bad file is not published; the others are. Re-running on
    unchanged files changes nothing; a new version directory publishes a new version, which
    becomes the latest. The exit status is 0 only when everything was published.
    """
    if not paths and not mapfiles:
        raise click.UsageError("give PATH... to scan or --mapfile FILE")
    parsed_roots = parse_root_list(roots)
    items: list[Path | MapLine] = list(paths)
    try:
        for mf in mapfiles:
            items.extend(read_mapfile(mf))
    except MapfileError as exc:
        stderr.print(f"[red]error[/] {exc}", highlight=False)
        sys.exit(1)
    client = None
    if not dry_run:
        if not index_url:
            raise click.UsageError("give --index URL (or ESGF_HA_INDEX), or use --dry-run")
        client = make_client(index_url, token, cert, cacert, retries)
    if index_node is None:
        # the bare host name, as esg-search and esgcet write it (clients compare it with a
        # host name, so a port here makes every record look foreign to them)
        index_node = (urlsplit(index_url).hostname if index_url else None) or "localhost"
    settings = PublishSettings(
        data_node=data_node,
        index_node=index_node,
        roots=parsed_roots,
        project=project.upper() if project != "auto" else "auto",
        checksum_type=checksum_type.upper(),
        opendap=opendap,
        url_base=url_base,
        jobs=jobs,
        batch_files=batch_files,
    )
    # SIGTERM (a container or Job being stopped) ends the run at the next dataset version:
    # what was read is still published whole, and the exit status says to run again
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        with progress_hooks(not no_progress) as hooks:
            report = run(items, settings, client, hooks=hooks, stop=stop)
    except PublisherError as exc:
        stderr.print(f"[red]error[/] {exc}", highlight=False)
        sys.exit(1)
    finally:
        if client is not None:
            client.close()
    print_report(report, as_json)
    sys.exit(0 if report.ok else 1)
