"""`esgf-ha deploy …`: deployment files made from a federation config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from esgf_ha.cli.options import federation_config

if TYPE_CHECKING:
    from esgf_ha.federation.config import FederationConfig


@click.group(
    epilog="""\b
Examples:
  esgf-ha deploy compose -c federation.yaml > compose.yaml
  esgf-ha deploy secrets -c federation.yaml --out secrets
  podman-compose -f compose.yaml up -d
"""
)
def deploy() -> None:
    """Make deployment files (Compose) from a federation config."""


@deploy.command(
    "compose",
    epilog="""\b
Examples:
  esgf-ha deploy compose -c federation.yaml > compose.yaml
  esgf-ha deploy compose -c federation.yaml --image registry.example.org/esgf-ha:0.1.0 \\
      --sample-site site-a > compose.yaml
  esgf-ha deploy secrets -c federation.yaml --out secrets
  podman-compose -f compose.yaml up -d

Every service of the config becomes a container of the esgf-ha image on the host's network,
listening where the config says: the master, each site's replica index, data node and
replicator, the DNS, and a one-shot publisher that writes sample data at one site and
publishes it. Paths in the file (the config, the secrets) are relative to the Compose file,
which is expected beside the config. Data roots must lie in /srv/esgf, where each site's
files volume is mounted.
""",
)
@federation_config
@click.option("--image", default="localhost/esgf-ha:dev", show_default=True, help="image to run")
@click.option(
    "--secrets-dir",
    default="secrets",
    show_default=True,
    help="directory of the secret files, as the Compose file names it",
)
@click.option("--sample-site", help="site whose sample data the publisher service publishes")
@click.option(
    "--sample-datasets",
    type=click.IntRange(1, 1000),
    default=2,
    show_default=True,
    help="sample datasets the publisher service writes",
)
def compose(
    config: FederationConfig,
    config_path: Path,
    image: str,
    secrets_dir: str,
    sample_site: str | None,
    sample_datasets: int,
) -> None:
    """Print a Compose file running every service of the federation config."""
    from esgf_ha.federation.compose import compose as make
    from esgf_ha.federation.compose import render
    from esgf_ha.federation.config import ConfigError

    try:
        document = make(
            config,
            config_file=config_path.name,
            secrets_dir=secrets_dir,
            image=image,
            sample_site=sample_site,
            sample_datasets=sample_datasets,
        )
    except (ValueError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render(document, config_path.name, secrets_dir), nl=False)


@deploy.command(
    "secrets",
    epilog="""\b
Examples:
  esgf-ha deploy secrets -c federation.yaml --out secrets
  esgf-ha deploy secrets -c federation.yaml --out /etc/esgf-ha/secrets --uid 10001

Writes the token signing key (the master signs with it, data nodes verify with its public
half) and tokens for the replicas (esgf:replicate), the replicators (esgf:replicate,
esgf:publish, esgf:download) and the publisher (esgf:publish). Files that exist are kept, so
running it again changes nothing. Run as root, it gives the files to the image's user.
""",
)
@federation_config
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="directory to write the secret files to",
)
@click.option(
    "--uid",
    type=int,
    default=10001,
    show_default=True,
    help="owner of the files (when run as root): the user the containers run as",
)
def secrets(config: FederationConfig, config_path: Path, out: Path, uid: int) -> None:
    """Make the secret files a Compose deployment mounts."""
    from esgf_ha.federation.compose import secrets as make

    for path in make(out, uid):
        click.echo(str(path))
