"""`esgf-ha sample-data`: small, realistic, deterministic CMIP6/CMIP5 netCDF files."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from esgf_ha.publisher.sampledata import generate


@click.command(
    "sample-data",
    epilog="""\b
Examples:
  esgf-ha sample-data /tmp/data --project CMIP6 --datasets 4
  esgf-ha sample-data /tmp/data --project CMIP5 --datasets 2 --seed 7
  esgf-ha sample-data /tmp/bench --project CMIP6 --datasets 1000 --files-per-version 10
  esgf-ha publish --index URL --token T --data-node dn.example.org \\
      --root esg_dataroot=/tmp/data /tmp/data
""",
)
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--project",
    type=click.Choice(["CMIP6", "CMIP5"], case_sensitive=False),
    default="CMIP6",
    show_default=True,
)
@click.option("--datasets", default=4, show_default=True, type=click.IntRange(1, 100000))
@click.option("--seed", default=1, show_default=True, help="the same seed gives the same files")
@click.option(
    "--files-per-version",
    type=click.IntRange(1, 1000),
    help="time-split files per dataset version (per variable for CMIP5) [default: 2 or 3]",
)
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def sample_data(
    outdir: Path,
    project: str,
    datasets: int,
    seed: int,
    files_per_version: int | None,
    as_json: bool,
) -> None:
    """Write DATASETS sample datasets under OUTDIR in the project's DRS tree.

    Each dataset has one or two versions of two or three time-split files with real CF
    structure (time/lat/lon and their bounds, the variable) and the global attributes the
    project's DRS needs. OUTDIR is the data root: publish with --root NAME=OUTDIR.
    """
    console = Console(stderr=True)
    with Progress(
        TextColumn("sample-data"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as progress:
        task = progress.add_task("write", total=None)
        summary = generate(
            outdir,
            project,
            datasets,
            seed,
            files_per_version=files_per_version,
            on_planned=lambda n: progress.update(task, total=n),
            on_file=lambda _: progress.advance(task),
        )
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()).decode())
    else:
        click.echo(
            f"wrote {len(summary.files)} files ({summary.bytes} bytes) of {summary.datasets} "
            f"{summary.project} datasets, {summary.versions} versions, under {summary.root}"
        )
