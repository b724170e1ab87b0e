"""`esgf-ha replication …`: pause, resume and inspect a replica index."""

from __future__ import annotations

import sys

import click
import orjson

from esgf_ha.common.index_client import IndexClient, IndexClientError, IndexRefused
from esgf_ha.common.retry import Backoff


def _call(replica: str, token: str, method: str, path: str) -> dict:
    try:
        with IndexClient(replica, token=token, retry=Backoff(retries=0)) as client:
            body = orjson.loads(client.request(method, path).content)
    except ValueError as exc:  # not an http(s) URL, or not JSON
        raise click.ClickException(f"{replica}: {exc}") from None
    except IndexRefused as exc:
        raise click.ClickException(f"{replica} answered {exc}") from None
    except IndexClientError as exc:
        raise click.ClickException(f"cannot reach {replica}: {exc}") from None
    return dict(body)


replica_option = click.option(
    "--replica", metavar="URL", required=True, help="base URL of the replica index"
)
token_option = click.option(
    "--token",
    envvar="ESGF_HA_TOKEN",
    required=True,
    help="bearer token with scope esgf:replicate, signed by the replica's key [env ESGF_HA_TOKEN]",
)
EXAMPLES = """\b
Examples:
  TOKEN=$(esgf-ha token issue --state-dir state/replica1 --scope esgf:replicate)
  esgf-ha replication pause  --replica http://127.0.0.1:8081 --token $TOKEN
  esgf-ha replication status --replica http://127.0.0.1:8081 --token $TOKEN
  esgf-ha replication resume --replica http://127.0.0.1:8081 --token $TOKEN
"""


@click.group(epilog=EXAMPLES)
def replication() -> None:
    """Pause, resume and inspect a replica index."""


@replication.command(epilog=EXAMPLES)
@replica_option
@token_option
def pause(replica: str, token: str) -> None:
    """Stop applying upstream changes (searches go on; the lag grows)."""
    body = _call(replica, token, "POST", "/api/v1/replication/pause")
    click.echo(f"paused at seq {body['seq']}")


@replication.command(epilog=EXAMPLES)
@replica_option
@token_option
def resume(replica: str, token: str) -> None:
    """Apply upstream changes again, from where the replica stopped."""
    body = _call(replica, token, "POST", "/api/v1/replication/resume")
    click.echo(f"resumed from seq {body['seq']}")


@replication.command(epilog=EXAMPLES)
@replica_option
@token_option
def status(replica: str, token: str) -> None:
    """Print the replica's position, lag and upstream state as JSON."""
    body = _call(replica, token, "GET", "/api/v1/replication")
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
