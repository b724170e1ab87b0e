"""Settings of one index service: everything it needs, in one object, from the CLI or env."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IndexSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESGF_HA_INDEX_", extra="forbid")

    role: Literal["master", "replica"] = Field("master", description="master takes writes")
    state_dir: Path = Field(Path("state/index"), description="SQLite store, keys, TLS files")
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT to listen on (port 0: any)")
    tls: bool = Field(False, description="serve HTTPS with a certificate from the state dir")
    tls_cert: Path | None = Field(None, description="certificate chain (PEM) instead of ours")
    tls_key: Path | None = Field(None, description="private key (PEM) for --tls-cert")
    hostnames: list[str] = Field(default_factory=list, description="names for our certificate")
    jwks_url: str | None = Field(None, description="external token issuer's JWKS URL")
    token_issuer: str | None = Field(None, description="required `iss` of external tokens")
    token_audience: str | None = Field(None, description="required `aud` of tokens")
    ws_anonymous_from: list[str] = Field(
        default_factory=list,
        description="networks (CIDR) whose unauthenticated /ws/* publications are accepted: "
        "esgcet 5.5.3 sends neither a token nor a client certificate",
    )
    max_body_bytes: int = Field(64 * 1024 * 1024, description="largest publish body accepted")
    search_timeout: float = Field(
        30.0, ge=0, description="seconds a search may take before it is stopped (503; 0: none)"
    )
    header_timeout: float = Field(
        20.0, gt=0, description="seconds a connection may take to send a request's headers"
    )
    max_connections: int = Field(
        1000, ge=1, description="open connections; over it the oldest idle one is closed"
    )
    upstream: str | None = Field(None, description="replica: URL of the index it follows")
    upstream_token: str | None = Field(
        None, description="replica: bearer token with scope esgf:replicate for the upstream"
    )
    upstream_ca: Path | None = Field(None, description="replica: CA (PEM) of an HTTPS upstream")
    max_lag: float = Field(
        30.0, description="replica: /readyz fails when the known lag exceeds this (seconds)"
    )
