"""`esgf-ha`: one program, a subcommand per job."""

from __future__ import annotations

import click

from esgf_ha import __version__
from esgf_ha.cli.cert import cert
from esgf_ha.cli.demo import demo
from esgf_ha.cli.deploy import deploy
from esgf_ha.cli.index_verify import index
from esgf_ha.cli.mapfile import mapfile
from esgf_ha.cli.publish import publish
from esgf_ha.cli.replicate import replicate
from esgf_ha.cli.replication import replication
from esgf_ha.cli.sample_data import sample_data
from esgf_ha.cli.serve import serve
from esgf_ha.cli.serve_dns import serve_dns
from esgf_ha.cli.status import status
from esgf_ha.cli.token import token
from esgf_ha.cli.unpublish import delete, retract
from esgf_ha.cli.up import up


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  esgf-ha demo                                   # a master index with sample data
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:8080
  esgf-ha token issue --state-dir state/master --scope esgf:publish
""",
)
@click.version_option(__version__, prog_name="esgf-ha")
def cli() -> None:
    """Highly available ESGF search and download services."""


serve.add_command(serve_dns)
cli.add_command(serve)
cli.add_command(token)
cli.add_command(demo)
cli.add_command(up)
cli.add_command(replicate)
cli.add_command(status)
cli.add_command(index)
cli.add_command(replication)
cli.add_command(publish)
cli.add_command(sample_data)
cli.add_command(mapfile)
cli.add_command(retract)
cli.add_command(delete)
cli.add_command(cert)
cli.add_command(deploy)


def main() -> None:
    """The `esgf-ha` console script; the program name is fixed so help reads the same
    whether it runs as the script or as `python -m esgf_ha`."""
    cli(prog_name="esgf-ha")
