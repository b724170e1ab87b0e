"""`esgf-ha demo`: a master index on loopback with sample data, and searches to try."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import httpx
import orjson

from esgf_ha.common.auth import issue_token
from esgf_ha.common.server import ServiceNotReady, wait_until_ready
from esgf_ha.records.samples import as_batch, cmip5_samples, cmip6_samples


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command(
    epilog="""\b
Examples:
  esgf-ha demo                       # runs until Ctrl-C
  esgf-ha demo --check               # run the scenario unattended, exit 0 if all is well
  esgf-ha demo --listen 127.0.0.1:8080 --state-dir demo-state
"""
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="where the demo keeps its state (default: a fresh temporary directory)",
)
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    help="address of the master index (port 0: any free port)",
)
@click.option("--datasets", default=40, show_default=True, help="CMIP6 sample datasets")
@click.option("--check", is_flag=True, help="run the checks unattended and exit")
def demo(state_dir: Path | None, listen: str, datasets: int, check: bool) -> None:
    """Start a master index on loopback, publish sample CMIP6/CMIP5 records, show searches."""
    temp = None
    if state_dir is None:
        temp = Path(tempfile.mkdtemp(prefix="esgf-ha-demo-"))
        state_dir = temp
    master_dir = state_dir / "master"
    master_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esgf_ha",
            "serve",
            "index",
            "--role",
            "master",
            "--state-dir",
            str(master_dir),
            "--listen",
            listen,
            "--log-level",
            "warning",
        ],
    )
    try:
        try:
            url = wait_until_ready(master_dir, "index", proc, verify=False)
        except ServiceNotReady as exc:
            raise click.ClickException(str(exc)) from None
        token = issue_token(master_dir, ["esgf:publish"], subject="demo")
        samples = cmip6_samples(datasets) + cmip5_samples(max(4, datasets // 5))
        with httpx.Client(base_url=url, timeout=60) as client:
            r = client.post(
                "/api/v1/publish",
                content=orjson.dumps(as_batch(samples)),
                headers={"Authorization": f"Bearer {token}"},
            )
            if r.status_code != 200:
                raise click.ClickException(
                    f"publishing the samples failed: {r.status_code} {r.text}"
                )
            published = r.json()
            click.echo(f"master index: {url}")
            click.echo(
                f"published {len(published['published'])} sample datasets "
                f"({len(published['unchanged'])} already there)\n"
            )
            search = "/esg-search/search"
            tries = [
                (
                    "latest CMIP6 datasets, counted by source_id",
                    {
                        "project": "CMIP6",
                        "latest": "true",
                        "facets": "source_id",
                        "limit": "0",
                        "format": "application/solr+json",
                    },
                ),
                (
                    "near-surface temperature, not from CESM2 (negation)",
                    {
                        "variable_id": "tas",
                        "source_id!": "CESM2",
                        "limit": "3",
                        "fields": "instance_id",
                        "format": "application/solr+json",
                    },
                ),
                (
                    "Lucene query as esgpull sends it",
                    {
                        "query": "project:CMIP6 AND variable_id:(pr tas)",
                        "limit": "0",
                        "format": "application/solr+json",
                    },
                ),
                (
                    "the files of one dataset",
                    {
                        "type": "File",
                        "dataset_id": str(samples[0].dataset["id"]),
                        "limit": "5",
                        "fields": "title,size,checksum",
                        "format": "application/solr+json",
                    },
                ),
            ]
            failures = 0
            for title, params in tries:
                resp = client.get(search, params=params)
                body = resp.json()
                shown = httpx.URL(url + search, params=params)
                click.echo(f"# {title}\ncurl '{shown}'")
                click.echo(f"  -> numFound={body['response']['numFound']}")
                for name, flat in body["facet_counts"]["facet_fields"].items():
                    pairs = ", ".join(
                        f"{v}={c}" for v, c in zip(flat[::2], flat[1::2], strict=True)
                    )
                    click.echo(f"     {name}: {pairs}")
                for doc in body["response"]["docs"][:3]:
                    click.echo(f"     {orjson.dumps(doc).decode()[:120]}")
                failures += body["response"]["numFound"] == 0
            click.echo(
                f"\nwget script for CMIP6 tas files:\n  curl -o wget.sh '{url}/esg-search/wget?"
                "project=CMIP6&variable_id=tas&limit=20'"
                f"\nPython:\n  from pyesgf.search import SearchConnection\n"
                f"  conn = SearchConnection('{url}/esg-search', distrib=False)\n"
                "  ctx = conn.new_context(project='CMIP6', variable_id='tas')\n"
                "  print(ctx.hit_count, ctx.facet_counts['source_id'])"
            )
            if check:
                if failures:
                    raise click.ClickException(f"{failures} example searches found nothing")
                click.echo("\ndemo check passed")
                return
        click.echo("\nThe index keeps running; press Ctrl-C to stop it.")
        signal.signal(signal.SIGTERM, _interrupt)  # stop the index on SIGTERM as on Ctrl-C
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
