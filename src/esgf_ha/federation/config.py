"""The federation config: one YAML file describing the master, the sites, the DNS names and the
health policy. `esgf-ha serve dns`, `esgf-ha up` and `esgf-ha status` all read it.

Validation errors name the offending key (`sites[1].index_port: …`), because an operator editing
a config by hand needs to know where to look, not a pydantic traceback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """The federation config cannot be used; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


class _Tls(_Strict):
    tls: bool = False
    tls_cert: Path | None = Field(None, description="certificate chain (PEM) to serve instead")
    tls_key: Path | None = Field(None, description="private key for tls_cert")

    @model_validator(mode="after")
    def _cert_and_key(self) -> _Tls:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is not None and not self.tls:
            raise ValueError("tls_cert is given but tls is false")
        return self


class MasterConfig(_Tls):
    address: str = Field("127.0.0.1", description="address the master index listens on")
    port: int = Field(8000, ge=0, le=65535)

    _check_address = field_validator("address")(_address)


class ReplicationConfig(_Strict):
    """What this site copies from the others (Synda-style selection or a search query)."""

    selection: Path | None = None
    query: str | None = None


class SiteConfig(_Tls):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    address: str
    index_port: int = Field(8080, ge=1, le=65535)
    data_port: int | None = Field(8081, ge=1, le=65535, description="null: an index-only site")
    data_roots: dict[str, Path] = Field(default_factory=dict)
    replication: ReplicationConfig | None = None

    _check_address = field_validator("address")(_address)

    @property
    def index_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{_host(self.address)}:{self.index_port}"

    @property
    def data_url(self) -> str | None:
        if self.data_port is None:
            return None
        return f"{'https' if self.tls else 'http'}://{_host(self.address)}:{self.data_port}"

    def services(self) -> list[str]:
        return ["search", "data"] if self.data_port is not None else ["search"]


class Rfc2136Config(_Strict):
    """Push the healthy addresses to an existing DNS server instead of answering ourselves."""

    server: str = Field(description="the primary server's address")
    port: int = Field(53, ge=1, le=65535)
    zone: str | None = Field(None, description="zone to update (default: dns.zone)")
    tsig_key_name: str
    tsig_secret: str = Field(description="base64 shared secret")
    tsig_algorithm: str = "hmac-sha256"

    _check_server = field_validator("server")(_address)


class DnsServerConfig(_Strict):
    """One of the zone's authoritative servers (typically one per site). Each checks every
    site by itself and answers for the whole zone; the NS set names them all."""

    name: str = Field(
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,250}[a-z0-9.])?$",
        description="its name in the NS set: a label in the zone (ns-a) or an absolute name",
    )
    address: str = Field(description="address it listens on, and its glue record")
    port: int | None = Field(None, ge=0, le=65535, description="default: dns.port")
    http_port: int | None = Field(None, ge=0, le=65535, description="default: dns.http_port")

    _check_address = field_validator("address")(_address)


class DnsConfig(_Strict):
    zone: str = Field("esgf.test.", description="the zone we are authoritative for")
    address: str = Field(
        "127.0.0.1", description="address of the one DNS server, when `servers` is not given"
    )
    port: int = Field(53, ge=0, le=65535)
    http_port: int = Field(0, ge=0, le=65535, description="health/metrics/status HTTP port")
    servers: list[DnsServerConfig] = Field(
        default_factory=list,
        description="several authoritative servers, one per site typically (default: one, ns1, "
        "at `address`)",
    )
    rate_limit: float = Field(
        0, ge=0, le=1e6, description="DNS queries per second per client address (0: no limit)"
    )
    rate_burst: int = Field(50, ge=1, le=100000, description="queries a client may send at once")
    search_name: str = Field("search", description="service name for the search API")
    data_name: str = Field("data", description="service name for downloads (may equal search)")
    ttl: int = Field(5, ge=0, le=86400)
    max_records: int = Field(1, ge=1, le=32, description="addresses per answer")
    mode: Literal["serve", "rfc2136"] = "serve"
    rfc2136: Rfc2136Config | None = None

    _check_address = field_validator("address")(_address)

    @field_validator("zone")
    @classmethod
    def _absolute(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or value == ".":
            raise ValueError("the zone must be a domain name such as esgf.example.org.")
        return value if value.endswith(".") else value + "."

    @model_validator(mode="after")
    def _rfc2136_needs_server(self) -> DnsConfig:
        if self.mode == "rfc2136" and self.rfc2136 is None:
            raise ValueError("mode rfc2136 needs an rfc2136 section (server, tsig key)")
        return self

    @model_validator(mode="after")
    def _distinct_servers(self) -> DnsConfig:
        names = [s.ns_fqdn for s in self.name_servers()]
        if len(set(names)) != len(names):
            raise ValueError(f"DNS server names must be distinct: {names}")
        endpoints = [(s.address, s.port) for s in self.name_servers() if s.port]
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("two DNS servers share an address and port")
        return self

    def fqdn(self, name: str) -> str:
        return name.lower().rstrip(".") + "." + self.zone

    def name_servers(self) -> list[NameServer]:
        """Every authoritative server of the zone, with defaults filled in. Without `servers`,
        the single server of the older form: `ns1` at `address`."""
        configured = self.servers or [DnsServerConfig(name="ns1", address=self.address)]
        return [
            NameServer(
                name=s.name,
                ns_fqdn=s.name if s.name.endswith(".") else self.fqdn(s.name),
                address=s.address,
                port=self.port if s.port is None else s.port,
                http_port=self.http_port if s.http_port is None else s.http_port,
            )
            for s in configured
        ]

    def name_server(self, name: str | None) -> NameServer:
        servers = self.name_servers()
        if name is None:
            if len(servers) > 1:
                raise ConfigError(
                    "several DNS servers are configured; say which one this process is "
                    f"(--server {' | '.join(s.name for s in servers)})"
                )
            return servers[0]
        for server in servers:
            if name in (server.name, server.ns_fqdn):
                return server
        raise ConfigError(
            f"no DNS server named {name!r} (servers: {', '.join(s.name for s in servers)})"
        )


@dataclass(frozen=True)
class NameServer:
    """A DNS server of the zone as it runs: its NS name, where it listens."""

    name: str
    ns_fqdn: str
    address: str
    port: int
    http_port: int


class HealthConfig(_Strict):
    interval: float = Field(1.0, gt=0, le=3600, description="seconds between checks of a site")
    timeout: float = Field(1.0, gt=0, le=60, description="seconds a check may take")
    failures: int = Field(2, ge=1, le=100, description="failed checks before a site is out")
    recoveries: int = Field(1, ge=1, le=100, description="passed checks before it is back")


class AuthConfig(_Strict):
    ca_file: Path | None = Field(None, description="CA bundle to verify HTTPS sites with")


class FederationConfig(_Strict):
    name: str = "esgf-ha"
    state_dir: Path = Field(Path("state"), description="where services keep their state")
    master: MasterConfig = Field(default_factory=lambda: MasterConfig())
    sites: list[SiteConfig] = Field(min_length=1)
    dns: DnsConfig = Field(default_factory=lambda: DnsConfig())
    health: HealthConfig = Field(default_factory=lambda: HealthConfig())
    auth: AuthConfig = Field(default_factory=lambda: AuthConfig())

    @model_validator(mode="after")
    def _distinct(self) -> FederationConfig:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be distinct: {names}")
        endpoints = [
            (s.address, p) for s in self.sites for p in (s.index_port, s.data_port) if p is not None
        ]
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("two services of the sites share an address and port")
        return self

    def site(self, name: str) -> SiteConfig:
        for site in self.sites:
            if site.name == name:
                return site
        raise ConfigError(
            f"no site named {name!r} (sites: {', '.join(s.name for s in self.sites)})"
        )


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: object, source: str = "config") -> FederationConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return FederationConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{_where(err['loc'])}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def load_config(path: Path) -> FederationConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    config = parse_config(data, str(path))
    if not config.state_dir.is_absolute():
        # relative paths in a config are relative to the config file, not to the caller's cwd
        base = path.resolve().parent
        config = config.model_copy(update={"state_dir": base / config.state_dir})
    return config
