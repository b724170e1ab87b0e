"""Settings of one index service: everything it needs, in one object, from the CLI or env."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IndexSettings(BaseSettings):
    """Everything one index node needs, in one object, so the app, the CLI and the tests
    build a node from the same description and an operator finds every knob in one place."""

    model_config = SettingsConfigDict(env_prefix="ESGF_HA_INDEX_", extra="forbid")

    role: Literal["master", "replica"] = Field("master", description="master takes writes")
    state_dir: Path = Field(Path("state/index"), description="SQLite store, keys, TLS files")
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT to listen on (port 0: any)")
    tls: bool = Field(False, description="serve HTTPS with a certificate from the state dir")
    tls_cert: Path | None = Field(None, description="certificate chain (PEM) instead of ours")
    tls_key: Path | None = Field(None, description="private key (PEM) for --tls-cert")
    client_ca: Path | None = Field(
        None,
        description="CA (PEM) whose client certificates may publish; default: the federation "
        "CA in the state dir, never the --tls-cert chain",
    )
    hostnames: list[str] = Field(default_factory=list, description="names for our certificate")
    jwks_url: str | None = Field(None, description="external token issuer's JWKS URL")
    token_issuer: str | None = Field(None, description="required `iss` of external tokens")
    token_audience: str | None = Field(None, description="required `aud` of tokens")
    ws_anonymous_from: list[str] = Field(
        default_factory=list,
        description="networks (CIDR) whose unauthenticated /ws/* publications are accepted: "
        "esgcet 5.5.3 sends neither a token nor a client certificate",
    )
    # publication limits (413 above them): sized for a dataset version of ~9,000 files as our
    # publisher sends it (~2.5 KB a file record) and for esgcet's one-record /ws/* bodies
    max_body_bytes: int = Field(
        24 * 1024 * 1024, gt=0, description="largest /api/v1 write body accepted (bytes)"
    )
    max_ws_body_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="largest /esg-search/ws/* body accepted (bytes)"
    )
    max_batch_records: int = Field(
        25_000, gt=0, description="most records (datasets, files, aggregations) in one batch"
    )
    max_record_fields: int = Field(1_000, gt=0, description="most fields in one record")
    max_field_values: int = Field(10_000, gt=0, description="most values of one field")
    max_value_chars: int = Field(
        65_536, gt=0, description="longest single field value accepted (characters)"
    )
    facets_file: Path | None = Field(
        None,
        description="TOML file naming each project's facets (added to the built-in lists); "
        "they may be searched before any record has them, and `facets=*` lists them",
    )
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
