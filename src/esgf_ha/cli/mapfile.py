"""`esgf-ha mapfile`: esgprep-compatible mapfiles of netCDF files in a DRS tree."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from esgf_ha.cli.options import parse_root_list
from esgf_ha.publisher.mapfile import MapLine
from esgf_ha.publisher.scan import scan


@click.command(
    epilog="""\b
Examples:
  esgf-ha mapfile --root esg_dataroot=/esg/data /esg/data/CMIP6/CMIP/NCAR > all.map
  esgf-ha mapfile --root esg_dataroot=/esg/data --outdir maps/ /esg/data/CMIP6
      # one <instance_id>.map per dataset version, as esgmapfile names them
  esgf-ha publish --index URL --token T --data-node dn --root esg_dataroot=/esg/data \\
      --mapfile all.map
""",
)
@click.option("--root", "roots", multiple=True, required=True, help="NAME=PATH (repeatable)")
@click.option(
    "--project",
    type=click.Choice(["auto", "CMIP5", "CMIP6"], case_sensitive=False),
    default="auto",
    show_default=True,
)
@click.option(
    "--checksum-type",
    type=click.Choice(["SHA256", "MD5"], case_sensitive=False),
    default="SHA256",
    show_default=True,
)
@click.option(
    "--outdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="write one mapfile per dataset version here instead of all lines to stdout",
)
@click.option("--jobs", type=int, help="worker processes [default: cores]")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def mapfile(
    roots: tuple[str, ...],
    project: str,
    checksum_type: str,
    outdir: Path | None,
    jobs: int | None,
    paths: tuple[Path, ...],
) -> None:
    """Write mapfile lines for the netCDF files under PATH... (spec §2.2):
    `<id>.v<version> | <path> | <size> | mod_time=… | checksum=… | checksum_type=SHA256 |
    tracking_id=…`.

    Files are checked as `publish` checks them; a dataset version with a bad file is left
    out (reported on stderr, exit status 1).
    """
    parsed = parse_root_list(roots)
    result = scan(
        list(paths),
        parsed,
        project=project.upper() if project != "auto" else "auto",
        checksum_type=checksum_type.upper(),
        jobs=jobs,
    )
    for problem in result.all_problems:
        click.echo(f"error {problem.kind}: {problem.path}: {problem.reason}", err=True)
    for warning in (w for ds in result.datasets for w in ds.warnings):
        click.echo(f"warning {warning.kind}: {warning.path}: {warning.message}", err=True)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    for ds in result.datasets:
        if ds.problems:
            click.echo(f"skipped {ds.instance_id}: it has files with errors", err=True)
            continue
        lines = [
            MapLine(
                ds.drs.master_id,
                ds.drs.version,
                f.drs.path,
                f.size,
                f.mtime,
                f.checksum,
                f.checksum_type,
                str(f.header.attrs.get("tracking_id", "")) or None,
            ).format()
            for f in ds.files
        ]
        text = "\n".join(lines) + "\n"
        if outdir is None:
            sys.stdout.write(text)
        else:
            target = outdir / f"{ds.instance_id}.map"
            part = target.with_name(target.name + ".part")
            part.write_text(text)
            os.replace(part, target)
            click.echo(str(target), err=True)
    sys.exit(1 if result.all_problems else 0)
