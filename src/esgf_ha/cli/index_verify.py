"""`esgf-ha index verify`: compare a replica's content with its master's."""

from __future__ import annotations

import click

from esgf_ha.common.index_client import IndexClient
from esgf_ha.common.retry import Backoff
from esgf_ha.index.verify import VerifyError, compare

VERIFY_EXAMPLES = """\b
Examples:
  esgf-ha index verify --master http://127.0.0.1:8080 --replica http://127.0.0.1:8081 \\
      --master-token $(esgf-ha token issue --state-dir state/master --scope esgf:replicate) \\
      --replica-token $(esgf-ha token issue --state-dir state/replica1 --scope esgf:replicate)
  esgf-ha index verify --master https://index.example.org --replica https://r1.example.org \\
      --token $FEDERATION_TOKEN      # one token both accept (external issuer)
"""


@click.group(epilog=VERIFY_EXAMPLES)
def index() -> None:
    """Operate on index nodes."""


@index.command(
    "verify",
    epilog=VERIFY_EXAMPLES
    + """
Exit status: 0 identical, 1 differences found (listed), 2 an index could not be asked.
""",
)
@click.option("--master", metavar="URL", required=True, help="the reference index")
@click.option("--replica", metavar="URL", required=True, help="the index to check")
@click.option("--token", envvar="ESGF_HA_TOKEN", help="token (esgf:replicate) for both")
@click.option("--master-token", help="token for the master (default: --token)")
@click.option("--replica-token", help="token for the replica (default: --token)")
@click.option("--max-listed", default=100, show_default=True, help="differences to print")
def verify(
    master: str,
    replica: str,
    token: str | None,
    master_token: str | None,
    replica_token: str | None,
    max_listed: int,
) -> None:
    """Compare content digests per range of records and list every difference."""
    tokens = (master_token or token, replica_token or token)
    if not all(tokens):
        raise click.UsageError("give --token, or both --master-token and --replica-token")

    def client(url: str, bearer: str | None) -> IndexClient:
        try:
            return IndexClient(url, token=bearer, timeout=300, retry=Backoff(retries=2))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    with client(master, tokens[0]) as m, client(replica, tokens[1]) as r:
        try:
            report = compare(m, r)
        except VerifyError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(2) from None
    for core, (on_master, on_replica) in report.counts.items():
        click.echo(f"{core}: master {on_master} records, replica {on_replica}")
    if report.identical:
        click.echo(f"identical ({report.requests} digest requests)")
        return
    click.echo(f"{len(report.differences)} differences:")
    for diff in report.differences[:max_listed]:
        click.echo(f"  {diff.core} {diff.record_id}: {diff.problem}")
    if len(report.differences) > max_listed:
        click.echo(f"  … and {len(report.differences) - max_listed} more")
    raise SystemExit(1)
