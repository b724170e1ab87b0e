"""`esgf-ha serve dns -c FEDERATION.yaml [--server NAME]`: one of the zone's health-checked
authoritative DNS servers."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from esgf_ha.cli.options import federation_config
from esgf_ha.cli.serve import shutdown_of, shutdown_options

if TYPE_CHECKING:
    from esgf_ha.federation.config import FederationConfig

from esgf_ha.common.logs import setup_logging


@click.command(
    "dns",
    epilog="""\b
Examples:
  esgf-ha serve dns -c federation.yaml                 # the one server of `dns.address`
  esgf-ha serve dns -c federation.yaml --server ns-a   # one of several in `dns.servers`
  dig @127.0.0.1 -p 5353 search.esgf.test A +short
  curl http://127.0.0.1:PORT/api/v1/status        # health of every site, current answers

Each server checks every site by itself and answers for the whole zone, with all the
servers in the NS set. With `dns.mode: rfc2136` it answers nothing itself and pushes
TSIG-signed dynamic updates to the DNS server named in `dns.rfc2136` instead; several may
push to the same primary. The HTTP side's address is written to
<state_dir>/dns/dns.endpoint.json (<state_dir>/dns/<server>/ with `dns.servers`).
""",
)
@federation_config
@click.option(
    "--server",
    "server_name",
    metavar="NAME",
    help="which of `dns.servers` this process is (needed when there are several)",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="where to write the endpoint file (default: <config state_dir>/dns)",
)
@shutdown_options
@click.option("--log-level", default="info", show_default=True)
def serve_dns(
    config: FederationConfig,
    config_path: Path,
    server_name: str | None,
    state_dir: Path | None,
    drain_seconds: float,
    grace_seconds: float,
    log_level: str,
) -> None:
    """Answer the federation's service names with healthy sites only."""
    from esgf_ha.balancer.service import Balancer
    from esgf_ha.federation.config import ConfigError
    from esgf_ha.federation.plan import dns_state, trust_verify

    try:
        server = config.dns.name_server(server_name)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    setup_logging(log_level)
    state = state_dir or dns_state(config, server)
    state.mkdir(parents=True, exist_ok=True)
    verify = trust_verify(config)
    balancer = Balancer(config, verify=verify, server=server)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(balancer.run(state, shutdown_of(drain_seconds, grace_seconds)))
