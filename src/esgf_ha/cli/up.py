"""`esgf-ha up -c FEDERATION.yaml`: every service of a federation config on this machine."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from esgf_ha.cli.options import federation_config

if TYPE_CHECKING:
    from esgf_ha.federation.config import FederationConfig

from esgf_ha.common.logs import setup_logging


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command(
    epilog="""\b
Examples:
  esgf-ha up -c federation.yaml              # runs until Ctrl-C, restarting crashed services
  esgf-ha status -c federation.yaml          # in another terminal: readiness, lag, DNS answers

Each service's log is <state_dir>/logs/<service>.log. The master signs the tokens the
replicas and replicators use (scopes esgf:replicate, esgf:publish, esgf:download).
""",
)
@federation_config
@click.option("--log-level", default="info", show_default=True)
def up(config: FederationConfig, config_path: Path, log_level: str) -> None:
    """Run the master, each site's services and the DNS as supervised child processes."""
    from esgf_ha.federation.runner import federation_supervisor

    setup_logging(log_level)
    supervisor = federation_supervisor(
        config, config_path, on_event=lambda name, what: click.echo(f"{name:24s} {what}", err=True)
    )
    # Ctrl-C and SIGTERM stop the children cleanly, even when started with SIGINT ignored
    # (as a shell without job control starts background commands)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        supervisor.start_all()
        click.echo(f"federation {config.name!r} up; Ctrl-C stops it", err=True)
        supervisor.run()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop_all()
