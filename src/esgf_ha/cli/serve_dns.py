"""`esgf-ha serve dns -c FEDERATION.yaml`: the health-checked DNS load balancer."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from esgf_ha.cli.federation_option import federation_config
from esgf_ha.cli.serve import shutdown_of, shutdown_options

if TYPE_CHECKING:
    from esgf_ha.federation.config import FederationConfig

from esgf_ha.common.logs import setup_logging


@click.command(
    "dns",
    epilog="""\b
Examples:
  esgf-ha serve dns -c federation.yaml
  dig @127.0.0.1 -p 5353 search.esgf.test A +short
  curl http://127.0.0.1:PORT/api/v1/status        # health of every site, current answers

With `dns.mode: rfc2136` it answers nothing itself and pushes TSIG-signed dynamic updates
to the DNS server named in `dns.rfc2136` instead. The HTTP side's address is written to
<state_dir>/dns/dns.endpoint.json.
""",
)
@federation_config
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
    state_dir: Path | None,
    drain_seconds: float,
    grace_seconds: float,
    log_level: str,
) -> None:
    """Answer the federation's service names with healthy sites only."""
    from esgf_ha.balancer.service import Balancer
    from esgf_ha.federation.plan import trust_verify

    setup_logging(log_level)
    state = state_dir or config.state_dir / "dns"
    state.mkdir(parents=True, exist_ok=True)
    verify = trust_verify(config)
    balancer = Balancer(config, verify=verify)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(balancer.run(state, shutdown_of(drain_seconds, grace_seconds)))
