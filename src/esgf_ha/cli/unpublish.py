"""`esgf-ha retract` and `esgf-ha delete`: take dataset versions out of the index (spec §2.7)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from esgf_ha.cli.options import index_options
from esgf_ha.cli.publish import make_client
from esgf_ha.publisher.client import IndexClient
from esgf_ha.publisher.errors import IndexError_


def _resolve(client: IndexClient, given: str, data_node: str | None) -> list[str]:
    """`instance_id|data_node` is a record id already; a bare instance_id is looked up."""
    if "|" in given:
        return [given]
    found = client.dataset_ids(given, data_node)
    if not found:
        where = f" on data node {data_node}" if data_node else ""
        raise click.ClickException(f"no dataset {given}{where} in the index")
    return found


def _unpublish(
    action: str,
    dataset_ids: tuple[str, ...],
    data_node: str | None,
    index_url: str,
    token: str | None,
    cert: Path | None,
    cacert: Path | None,
    retries: int,
    as_json: bool,
) -> None:
    with make_client(index_url, token, cert, cacert, retries) as client:
        try:
            ids = [i for given in dataset_ids for i in _resolve(client, given, data_node)]
            call = client.retract if action == "retract" else client.delete
            result = call(ids)
        except IndexError_ as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    done = result.get("retracted" if action == "retract" else "deleted", [])
    if as_json:
        click.echo(orjson.dumps(result).decode())
    else:
        for i in done:  # type: ignore[attr-defined]
            click.echo(f"{action}ed {i}" if action == "retract" else f"deleted {i}")


def _command(action: str, help_text: str, epilog: str) -> click.Command:
    @click.command(action, help=help_text, epilog=epilog)
    @click.argument("dataset_ids", nargs=-1, required=True, metavar="DATASET_ID...")
    @click.option("--data-node", help="with a bare instance_id: only the version on this data node")
    @click.option("--json", "as_json", is_flag=True, help="print the index's answer as JSON")
    @index_options()
    def command(
        dataset_ids: tuple[str, ...],
        data_node: str | None,
        as_json: bool,
        index_url: str,
        token: str | None,
        cert: Path | None,
        cacert: Path | None,
        retries: int,
    ) -> None:
        _unpublish(action, dataset_ids, data_node, index_url, token, cert, cacert, retries, as_json)

    return command


retract = _command(
    "retract",
    """Retract dataset versions: the Dataset record stays, marked retracted=true and
    latest=false; its File records are removed. DATASET_ID is `instance_id|data_node` (the
    record id) or a bare instance_id (every data node's copy, or --data-node's).""",
    """\b
Examples:
  esgf-ha retract --index http://127.0.0.1:8080 --token $TOKEN \\
      'CMIP6.CMIP.NCAR.CESM2.historical.r1i1p1f1.Amon.tas.gn.v20190308|esgf-data.example.org'
  esgf-ha retract --index URL --token $TOKEN --data-node esgf-data.example.org \\
      CMIP6.CMIP.NCAR.CESM2.historical.r1i1p1f1.Amon.tas.gn.v20190308
""",
)
delete = _command(
    "delete",
    """Delete dataset versions: the Dataset record and all its File records are removed.
    DATASET_ID is `instance_id|data_node` or a bare instance_id (see `retract`).""",
    """\b
Examples:
  esgf-ha delete --index http://127.0.0.1:8080 --token $TOKEN \\
      'CMIP6.CMIP.NCAR.CESM2.historical.r1i1p1f1.Amon.tas.gn.v20190308|esgf-data.example.org'
""",
)
