"""`esgf-ha up -c FEDERATION.yaml`: every service of a federation config on this machine."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import click

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
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="the federation config (YAML)",
)
@click.option("--log-level", default="info", show_default=True)
def up(config_path: Path, log_level: str) -> None:
    """Run the master, each site's services and the DNS as supervised child processes."""
    from esgf_ha.common.auth import issue_token
    from esgf_ha.federation.config import ConfigError, load_config
    from esgf_ha.federation.plan import REPLICA_SCOPES, REPLICATOR_SCOPES, master_state, plan
    from esgf_ha.federation.supervisor import Supervisor

    setup_logging(log_level)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    state = master_state(config)
    state.mkdir(parents=True, exist_ok=True)
    tokens = {}
    for role, scopes in (("replica", REPLICA_SCOPES), ("replicator", REPLICATOR_SCOPES)):
        path = state / "tokens" / f"{role}.jwt"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.touch(mode=0o600)  # before the secret is in it
        path.write_text(issue_token(state, scopes, subject=role, ttl=365 * 86400))
        tokens[role] = path
    specs = plan(config, config_path.resolve(), tokens, replicators=_has_replicate_command())
    supervisor = Supervisor(
        specs,
        config.state_dir / "logs",
        on_event=lambda name, what: click.echo(f"{name:24s} {what}", err=True),
    )
    signal.signal(signal.SIGTERM, _interrupt)
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


def _has_replicate_command() -> bool:
    from esgf_ha.cli.main import cli

    return "replicate" in cli.commands or shutil.which("esgf-ha-replicate") is not None
