"""What `esgf-ha up` and `esgf-ha demo` share: tokens for the federation's own services, the
process plan, and a supervisor to run it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from esgf_ha.common.auth import issue_token
from esgf_ha.federation.config import FederationConfig
from esgf_ha.federation.plan import REPLICA_SCOPES, REPLICATOR_SCOPES, master_state, plan
from esgf_ha.federation.supervisor import Supervisor

TOKEN_TTL = 365 * 86400.0


def service_tokens(config: FederationConfig) -> dict[str, Path]:
    """Token files signed by the master's key for the replicas and the replicators."""
    state = master_state(config)
    state.mkdir(parents=True, exist_ok=True)
    tokens = {}
    for role, scopes in (("replica", REPLICA_SCOPES), ("replicator", REPLICATOR_SCOPES)):
        path = state / "tokens" / f"{role}.jwt"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.touch(mode=0o600)  # before the secret is in it
        path.write_text(issue_token(state, scopes, subject=role, ttl=TOKEN_TTL))
        tokens[role] = path
    return tokens


def federation_supervisor(
    config: FederationConfig,
    config_path: Path,
    on_event: Callable[[str, str], None] | None = None,
) -> Supervisor:
    specs = plan(config, config_path.resolve(), service_tokens(config))
    return Supervisor(specs, config.state_dir / "logs", on_event=on_event)
