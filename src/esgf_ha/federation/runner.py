"""What `esgf-ha up` and `esgf-ha demo` share: tokens for the federation's own services, the
process plan, and a supervisor to run it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from esgf_ha.common.auth import issue_token
from esgf_ha.common.tls import ensure_ca, issue_server_cert
from esgf_ha.federation.config import FederationConfig
from esgf_ha.federation.plan import (
    REPLICA_SCOPES,
    REPLICATOR_SCOPES,
    federation_ca,
    master_state,
    plan,
    site_cert,
    trust_file,
    trust_verify,
    uses_tls,
)
from esgf_ha.federation.supervisor import Supervisor

TOKEN_TTL = 365 * 86400.0


def service_tokens(config: FederationConfig) -> dict[str, Path]:
    """Token files signed by the master's key: one for the replicas, and one per replicating
    site for its replicator, bound to that site's data node, so a replicator can publish and
    withdraw only the replica records of its own site."""
    state = master_state(config)
    state.mkdir(parents=True, exist_ok=True)
    tokens = {"replica": _token_file(state, "replica", REPLICA_SCOPES)}
    for site in config.sites:
        if site.replication is not None and site.data_url:
            tokens[f"replicator/{site.name}"] = _token_file(
                state,
                f"replicator-{site.name}",
                REPLICATOR_SCOPES,
                data_nodes=[urlsplit(site.data_url).netloc],
            )
    return tokens


def _token_file(
    state: Path, name: str, scopes: list[str], data_nodes: list[str] | None = None
) -> Path:
    path = state / "tokens" / f"{name}.jwt"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.touch(mode=0o600)  # before the secret is in it
    path.write_text(issue_token(state, scopes, subject=name, ttl=TOKEN_TTL, data_nodes=data_nodes))
    return path


def service_certs(config: FederationConfig) -> None:
    """Certificates for the sites that serve HTTPS, signed by the federation CA (the master's,
    made on first use), and the bundle every client inside the federation verifies with."""
    trust = trust_file(config)
    if not uses_tls(config) or trust is None:
        return
    ca = ensure_ca(federation_ca(config))
    for site in config.sites:
        if site.tls and site.tls_cert is None:
            cert, key = site_cert(config, site)
            issue_server_cert(federation_ca(config), [site.address], cert, key)
    bundle = ca.read_bytes()
    if config.auth.ca_file is not None:
        bundle += b"\n" + config.auth.ca_file.read_bytes()
    trust.parent.mkdir(parents=True, exist_ok=True)
    trust.write_bytes(bundle)


def federation_supervisor(
    config: FederationConfig,
    config_path: Path,
    on_event: Callable[[str, str], None] | None = None,
) -> Supervisor:
    service_certs(config)
    specs = plan(config, config_path.resolve(), service_tokens(config))
    return Supervisor(
        specs, config.state_dir / "logs", on_event=on_event, verify=trust_verify(config)
    )
