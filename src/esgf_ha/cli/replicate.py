"""`esgf-ha replicate …`: copy selected datasets to this site and publish them as replicas."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from esgf_ha.cli.options import parse_roots
from esgf_ha.common.logs import setup_logging

if TYPE_CHECKING:
    from esgf_ha.replicator.run import ReplicatorConfig

T = TypeVar("T")

EPILOG = """\b
Examples:
  # everything CMIP6 monthly tas/pr, once, into this site's data root
  esgf-ha replicate --state-dir state/repl --index https://master:8443 --token $TOKEN \\
      --site site-b --root esg_dataroot=/data/esgf --data-node https://site-b.example.org \\
      --query 'project=CMIP6&table_id=Amon&variable_id=tas&variable_id=pr' --once
  # a Synda-style selection file, following the master's change log
  esgf-ha replicate ... --selection cmip6-amon.txt --follow
  esgf-ha replicate status --state-dir state/repl
  esgf-ha replicate retry --state-dir state/repl      # give failed files another chance

Selection file lines: `facet=value [value…]`, `facet!=value`, `# comments`.
Files land under the root at their DRS path; `.part` files resume after a restart.
"""


@click.group(invoke_without_command=True, epilog=EPILOG)
@click.option("--state-dir", type=click.Path(path_type=Path), help="replicator state (SQLite)")
@click.option("--index", "index_url", help="index to search: the master or a nearby replica")
@click.option("--master", "master_url", help="master to publish to (default: --index)")
@click.option("--token", help="bearer token (scopes esgf:publish, esgf:download)")
@click.option(
    "--token-file", type=click.Path(path_type=Path, exists=True), help="read --token from a file"
)
@click.option("--site", help="this site's name (for logs and status)")
@click.option("--root", metavar="NAME=PATH", help="this site's data root")
@click.option("--data-node", "data_node_url", help="this site's data node URL, as records name it")
@click.option("--selection", type=click.Path(path_type=Path), help="Synda-style selection file")
@click.option("--query", help="selection as a query string: facet=value&facet!=value")
@click.option("--once", "mode", flag_value="once", default=True, help="one pass, then exit")
@click.option("--follow", "mode", flag_value="follow", help="keep following the master")
@click.option("--concurrency", default=8, show_default=True, help="files fetched at once")
@click.option("--per-host", default=4, show_default=True, help="connections per data node")
@click.option("--max-attempts", default=5, show_default=True, help="tries before a file fails")
@click.option("--poll", default=30.0, show_default=True, help="follow: longest wait, seconds")
@click.option(
    "--on-retract",
    type=click.Choice(["quarantine", "remove"]),
    default="quarantine",
    show_default=True,
    help="what to do with local files of a dataset retracted upstream",
)
@click.option("--remove-old-versions", is_flag=True, help="delete superseded local versions")
@click.option("--ca-file", type=click.Path(path_type=Path, exists=True), help="CA bundle")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary of each pass")
@click.option("--log-level", default="warning", show_default=True)
@click.pass_context
def replicate(
    ctx: click.Context,
    state_dir: Path | None,
    index_url: str | None,
    master_url: str | None,
    token: str | None,
    token_file: Path | None,
    site: str | None,
    root: str | None,
    data_node_url: str | None,
    selection: Path | None,
    query: str | None,
    mode: str,
    concurrency: int,
    per_host: int,
    max_attempts: int,
    poll: float,
    on_retract: str,
    remove_old_versions: bool,
    ca_file: Path | None,
    as_json: bool,
    log_level: str,
) -> None:
    """Replicate datasets from other sites: download, verify, place, publish as replicas."""
    if ctx.invoked_subcommand is not None:
        return
    from esgf_ha.replicator.errors import ReplicatorError
    from esgf_ha.replicator.run import ReplicatorConfig
    from esgf_ha.replicator.selection import parse_query, parse_selection_file

    setup_logging(log_level)
    if token_file is not None:
        token = token_file.read_text().strip()
    missing = [
        name
        for name, value in (("--state-dir", state_dir), ("--index", index_url), ("--site", site),
                            ("--root", root), ("--data-node", data_node_url))
        if not value
    ]  # fmt: skip
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    if bool(selection) == bool(query):
        raise click.UsageError("give exactly one of --selection FILE or --query 'facet=value&…'")
    assert state_dir and index_url and site and root and data_node_url
    ((root_name, root_path),) = parse_roots([root]).items()
    try:
        chosen = parse_selection_file(selection) if selection else parse_query(query or "")
    except ReplicatorError as exc:
        raise click.ClickException(str(exc)) from None
    verify: ssl.SSLContext | bool = True
    if ca_file:
        verify = ssl.create_default_context(cafile=str(ca_file))
    config = ReplicatorConfig(
        state_dir=state_dir,
        index_url=index_url,
        master_url=master_url or index_url,
        token=token,
        site=site,
        root_name=root_name,
        root_path=root_path,
        data_node_url=data_node_url,
        selection=chosen,
        concurrency=concurrency,
        per_host=per_host,
        max_attempts=max_attempts,
        poll_seconds=poll,
        on_retract="remove" if on_retract == "remove" else "quarantine",
        remove_old_versions=remove_old_versions,
        verify=verify,
        ca_file=ca_file,
    )
    ok = asyncio.run(_run(config, follow=mode == "follow", as_json=as_json))
    sys.exit(0 if ok else 1)


async def _run(config: ReplicatorConfig, *, follow: bool, as_json: bool) -> bool:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    from esgf_ha.replicator.errors import ReplicatorError
    from esgf_ha.replicator.run import Replicator

    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip
    task = progress.add_task(f"replicating to {config.site}", total=None)

    def advance(total: int, n: int) -> None:
        progress.update(task, total=total or None, advance=n)

    replicator = Replicator(config, progress=advance)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ok = True
    try:
        with progress:
            while True:
                progress.reset(task, total=None)
                try:
                    summary = await _until(replicator.run_once(), stop)
                except ReplicatorError as exc:
                    click.echo(f"error: {exc}", err=True)
                    ok = False
                    if not follow:
                        break
                    summary = None
                if summary is None and stop.is_set():
                    break
                if summary is not None:
                    ok = summary.ok
                    _report(summary.as_json(), as_json)
                if not follow or stop.is_set():
                    break
                await _until(replicator.wait_for_change(), stop)
                if stop.is_set():
                    break
    finally:
        replicator.close()
    return ok


async def _until(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """Run `work` unless `stop` is set first (then cancel it: the state stays consistent)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def _report(summary: dict[str, object], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        sys.stdout.flush()
        return
    failed = summary["failed"]
    click.echo(
        f"queued {len(summary['queued'])}, published {len(summary['published'])}, "  # type: ignore[arg-type]
        f"failed {len(failed)}, retracted {len(summary['retracted'])}; "  # type: ignore[arg-type]
        f"files {summary['files_done']} done / {summary['files_failed']} failed, "
        f"{summary['bytes']} bytes in {summary['seconds']} s",
        err=True,
    )
    for instance, reasons in failed.items():  # type: ignore[attr-defined]
        click.echo(f"  FAILED {instance}: {'; '.join(reasons)[:500]}", err=True)


@replicate.command(
    "status",
    epilog="""\b
Examples:
  esgf-ha replicate status --state-dir state/repl
  esgf-ha replicate status --state-dir state/repl --json | jq .failed_files
""",
)
@click.option("--state-dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--json", "as_json", is_flag=True)
def replicate_status(state_dir: Path, as_json: bool) -> None:
    """Queued, done and failed work of a replicator (safe while it runs)."""
    from rich.console import Console
    from rich.table import Table

    from esgf_ha.replicator.state import State

    state = State(state_dir)
    try:
        summary = state.summary()
        failed = state.files(None, "failed")
        datasets = state.datasets()
    finally:
        state.close()
    if as_json:
        out = {
            **summary,
            "failed_files": [{"file": f.file_id, "errors": f.errors} for f in failed],
            "dataset_list": [{"instance_id": d[0], "status": d[2]} for d in datasets],
        }
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        return
    console = Console()
    table = Table(title="datasets")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status_name, count in sorted(summary["datasets"].items()):  # type: ignore[attr-defined]
        table.add_row(status_name, str(count))
    console.print(table)
    files = Table(title="files")
    for col in ("status", "files", "bytes"):
        files.add_column(col)
    for status_name, info in sorted(summary["files"].items()):  # type: ignore[attr-defined]
        files.add_row(status_name, str(info["files"]), str(info["bytes"]))
    console.print(files)
    for f in failed[:50]:
        console.print(f"[red]failed[/] {f.file_id}: {f.errors[-1] if f.errors else ''}")


@replicate.command(
    "retry",
    epilog="""\b
Examples:
  esgf-ha replicate retry --state-dir state/repl   # then the next pass (or --follow) fetches them
""",
)
@click.option("--state-dir", type=click.Path(path_type=Path, exists=True), required=True)
def replicate_retry(state_dir: Path) -> None:
    """Queue permanently failed files again (the next pass fetches them)."""
    from esgf_ha.replicator.state import State

    state = State(state_dir)
    try:
        click.echo(f"{state.retry_failed()} failed files queued again")
    finally:
        state.close()
