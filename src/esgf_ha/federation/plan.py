"""From a federation config to the processes that run it on this machine: the master index,
each site's replica index, data node and data replicator, and each of the zone's DNS servers.

Each process is the same `esgf-ha` command a container would run, so `esgf-ha up` exercises
exactly what a deployment does.
"""

from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from esgf_ha.common.index_client import tls_verify
from esgf_ha.federation.config import FederationConfig, NameServer, SiteConfig

REPLICA_SCOPES = ["esgf:replicate"]
PUBLIC_KEY = "token-signing.pub.pem"  # beside the master's signing key
REPLICATOR_SCOPES = ["esgf:replicate", "esgf:publish", "esgf:download"]


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    state_dir: Path
    health_url: str | None = None  # `/livez` of the service, when it has one
    after: tuple[str, ...] = ()  # started once these answer their health URL
    env: dict[str, str] = field(default_factory=dict)


def esgf_ha() -> list[str]:
    return [sys.executable, "-m", "esgf_ha"]


def master_url(config: FederationConfig) -> str:
    m = config.master
    host = f"[{m.address}]" if ":" in m.address else m.address
    return f"{'https' if m.tls else 'http'}://{host}:{m.port}"


def master_state(config: FederationConfig) -> Path:
    return config.state_dir / "master"


def site_state(config: FederationConfig, site: SiteConfig) -> Path:
    return config.state_dir / "sites" / site.name


def dns_state(config: FederationConfig, server: NameServer) -> Path:
    """Where a DNS server writes its endpoint: `dns/` for the one server of the older config
    form (as before), `dns/<name>/` for each of `dns.servers`."""
    base = config.state_dir / "dns"
    return base / server.name if config.dns.servers else base


def uses_tls(config: FederationConfig) -> bool:
    return config.master.tls or any(s.tls for s in config.sites)


def federation_ca(config: FederationConfig) -> Path:
    """The CA that signs every service certificate `up` makes: the master's own, so client
    certificates from `esgf-ha cert issue --state-dir <state>/master` are trusted too."""
    return master_state(config) / "tls"


def site_cert(config: FederationConfig, site: SiteConfig) -> tuple[Path, Path]:
    """The certificate and key a TLS site's index and data node serve: the operator's, or
    the one `up` issues from the federation CA."""
    if site.tls_cert is not None and site.tls_key is not None:
        return site.tls_cert, site.tls_key
    tls = site_state(config, site) / "tls"
    return tls / "server.pem", tls / "server.key"


def trust_file(config: FederationConfig) -> Path | None:
    """What the federation's own clients verify HTTPS with. With TLS on, a bundle `up` writes:
    the federation CA, plus the operator's `auth.ca_file` if the config names one."""
    if uses_tls(config):
        return config.state_dir / "tls-trust.pem"
    return config.auth.ca_file


def trust_verify(config: FederationConfig) -> ssl.SSLContext | bool:
    """The `verify` argument for the federation's own HTTPS clients (DNS checks, status)."""
    trust = trust_file(config)
    return tls_verify(trust) if trust is not None and trust.exists() else True


class _Planner:
    """Builds the command line of each process of a federation."""

    def __init__(self, config: FederationConfig, config_path: Path, tokens: dict[str, Path]):
        self.config = config
        self.config_path = config_path
        self.tokens = tokens
        self.trust = trust_file(config)

    def ca_args(self, option: str, needed: bool) -> list[str]:
        return [option, str(self.trust)] if needed and self.trust is not None else []

    def site_tls(self, site: SiteConfig) -> list[str]:
        if not site.tls:
            return []
        cert, key = site_cert(self.config, site)
        return ["--tls", "--tls-cert", str(cert), "--tls-key", str(key)]

    def master(self) -> ProcessSpec:
        config, m = self.config, self.config.master
        return ProcessSpec(
            "master",
            [*esgf_ha(), "serve", "index", "--role", "master",
             "--state-dir", str(master_state(config)), "--listen", f"{m.address}:{m.port}",
             *(["--tls"] if m.tls else []),
             *(["--tls-cert", str(m.tls_cert), "--tls-key", str(m.tls_key)]
               if m.tls_cert else [])],
            master_state(config),
            master_url(config) + "/livez",
        )  # fmt: skip

    def index(self, site: SiteConfig, base: Path) -> ProcessSpec:
        config = self.config
        return ProcessSpec(
            f"{site.name}/index",
            [*esgf_ha(), "serve", "index", "--role", "replica",
             "--upstream", master_url(config), "--token-file", str(self.tokens["replica"]),
             "--state-dir", str(base / "index"),
             "--listen", f"{site.address}:{site.index_port}",
             *self.ca_args("--upstream-ca", config.master.tls), *self.site_tls(site)],
            base / "index",
            site.index_url + "/livez",
            after=("master",),
        )  # fmt: skip

    def data(self, site: SiteConfig, base: Path) -> ProcessSpec:
        roots = [
            arg for name, path in site.data_roots.items() for arg in ("--root", f"{name}={path}")
        ]
        key = master_state(self.config) / "keys" / PUBLIC_KEY
        return ProcessSpec(
            f"{site.name}/data",
            [*esgf_ha(), "serve", "data", "--state-dir", str(base / "data"),
             "--listen", f"{site.address}:{site.data_port}",
             # records name this node by address:port, whatever Host users send
             "--data-node", f"{site.address}:{site.data_port}",
             "--token-public-key", str(key),
             "--index", site.index_url, *roots, *self.ca_args("--index-ca", site.tls),
             *self.site_tls(site)],
            base / "data",
            f"{site.data_url}/livez",
            after=(f"{site.name}/index",),
        )  # fmt: skip

    def replicator(self, site: SiteConfig, base: Path) -> ProcessSpec:
        assert site.replication is not None
        selection = (
            ["--selection", str(site.replication.selection)]
            if site.replication.selection
            else ["--query", site.replication.query or ""]
        )
        root_name, root_path = next(iter(site.data_roots.items()))
        return ProcessSpec(
            f"{site.name}/replicator",
            [*esgf_ha(), "replicate", "--state-dir", str(base / "replicator"),
             "--index", site.index_url, "--master", master_url(self.config),
             "--token-file", str(self.tokens[f"replicator/{site.name}"]), "--site", site.name,
             "--data-node", site.data_url or "", "--root", f"{root_name}={root_path}",
             *self.ca_args("--ca-file", uses_tls(self.config)), *selection, "--follow"],
            base / "replicator",
            after=(f"{site.name}/data",),
        )  # fmt: skip

    def dns(self, after: tuple[str, ...]) -> list[ProcessSpec]:
        config = self.config
        several = bool(config.dns.servers)
        return [
            ProcessSpec(
                f"dns/{server.name}" if several else "dns",
                [
                    *esgf_ha(),
                    "serve",
                    "dns",
                    "-c",
                    str(self.config_path),
                    *(["--server", server.name] if several else []),
                ],
                dns_state(config, server),
                after=after,
            )  # fmt: skip
            for server in config.dns.name_servers()
        ]


def plan(config: FederationConfig, config_path: Path, tokens: dict[str, Path]) -> list[ProcessSpec]:
    """The processes of the federation, in start order. `tokens` maps "replica" and
    "replicator/<site>" to files holding bearer tokens signed by the master."""
    planner = _Planner(config, config_path, tokens)
    specs = [planner.master()]
    for site in config.sites:
        base = site_state(config, site)
        specs.append(planner.index(site, base))
        if site.data_port is not None:
            specs.append(planner.data(site, base))
        if site.replication is not None and site.data_roots:
            specs.append(planner.replicator(site, base))
    return specs + planner.dns(tuple(s.name for s in specs))
