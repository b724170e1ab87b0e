"""`esgf-ha token …`: bearer tokens for publishing, replication and restricted downloads."""

from __future__ import annotations

from pathlib import Path

import click

from esgf_ha.common.auth import SCOPES, issue_token


@click.group(
    epilog="""\b
Examples:
  esgf-ha token issue --state-dir state/master --scope esgf:publish
  esgf-ha token issue --state-dir state/master --scope esgf:replicate > replica.token
"""
)
def token() -> None:
    """Issue bearer tokens signed by a service's key."""


@token.command(
    "issue",
    epilog="""\b
Examples:
  esgf-ha token issue --state-dir state/master --scope esgf:publish
  TOKEN=$(esgf-ha token issue --state-dir state/master --scope esgf:publish --ttl 3600)
  curl -H "Authorization: Bearer $TOKEN" -d @batch.json http://127.0.0.1:8080/api/v1/publish
""",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="the state directory of the service whose key signs the token",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="scope to grant (repeatable)",
)
@click.option("--subject", default="operator", show_default=True, help="who the token is for")
@click.option("--ttl", default=86400.0, show_default=True, type=float, help="lifetime in seconds")
def issue(state_dir: Path, scopes: tuple[str, ...], subject: str, ttl: float) -> None:
    """Print a bearer token on stdout."""
    click.echo(issue_token(state_dir, list(scopes), subject=subject, ttl=ttl))
