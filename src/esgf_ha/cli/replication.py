"""`esgf-ha replication …`: pause, resume and inspect a replica index."""

from __future__ import annotations

from collections.abc import Callable

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


def _verb(
    name: str, method: str, path: str, summary: str, show: Callable[[dict], str]
) -> click.Command:
    """One subcommand: a request to the replica, its answer shown by `show`."""

    @replication.command(name, help=summary, epilog=EXAMPLES)
    @replica_option
    @token_option
    def command(replica: str, token: str) -> None:
        click.echo(show(_call(replica, token, method, path)))

    return command


pause = _verb(
    "pause",
    "POST",
    "/api/v1/replication/pause",
    "Stop applying upstream changes (searches go on; the lag grows).",
    lambda body: f"paused at seq {body['seq']}",
)
resume = _verb(
    "resume",
    "POST",
    "/api/v1/replication/resume",
    "Apply upstream changes again, from where the replica stopped.",
    lambda body: f"resumed from seq {body['seq']}",
)
status = _verb(
    "status",
    "GET",
    "/api/v1/replication",
    "Print the replica's position, lag and upstream state as JSON.",
    lambda body: orjson.dumps(body, option=orjson.OPT_INDENT_2).decode(),
)
