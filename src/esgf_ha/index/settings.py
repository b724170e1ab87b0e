"""Settings of one index service: everything it needs, in one object, from the CLI or env."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from esgf_ha.common.settings import (
    ServiceSettings,
    certificate_given,
    check_files,
    check_listen,
    setting_error,
)


class IndexSettings(ServiceSettings):
    """One index service's settings. Each field is read from `ESGF_HA_INDEX_<FIELD>` unless the
    command line gives it; the rules that tie fields together live in `_check`, so every way
    of building the settings (CLI, environment, tests) is held to them."""

    model_config = SettingsConfigDict(
        env_prefix="ESGF_HA_INDEX_", extra="forbid", populate_by_name=True
    )

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
    token_issuer: str | None = Field(
        None, description="`iss` every token from the jwks_url issuer must carry"
    )
    token_audience: str | None = Field(
        None, description="`aud` every token from the jwks_url issuer must carry"
    )
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
        None,
        # the shorter name came first and is kept for existing deployments
        validation_alias=AliasChoices("ESGF_HA_INDEX_UPSTREAM_TOKEN", "ESGF_HA_UPSTREAM_TOKEN"),
        description="replica: bearer token with scope esgf:replicate for the upstream",
    )
    upstream_ca: Path | None = Field(None, description="replica: CA (PEM) of an HTTPS upstream")
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1,
        description="worker processes serving this index on one port, each with its own copy "
        "of the facet index (auto: one per CPU); 1 serves from the main process",
    )
    max_lag: float = Field(
        30.0, gt=0, description="replica: /readyz fails when the known lag exceeds this (seconds)"
    )

    def worker_count(self) -> int:
        """How many worker processes `workers` asks for on this machine."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return int(self.workers)

    @model_validator(mode="after")
    def _check(self) -> IndexSettings:
        check_listen("listen", self.listen)
        if certificate_given(self.tls_cert, self.tls_key):
            self.tls = True
        check_files(
            {
                "tls_cert": self.tls_cert,
                "tls_key": self.tls_key,
                "client_ca": self.client_ca,
                "upstream_ca": self.upstream_ca,
                "facets_file": self.facets_file,
            }
        )
        if (self.token_issuer or self.token_audience) and not self.jwks_url:
            field = "token_issuer" if self.token_issuer else "token_audience"
            raise setting_error(field, "applies to an external issuer's tokens: give jwks_url too")
        if self.role == "replica":
            if not self.upstream:
                raise setting_error("upstream", "a replica needs the URL of the index it follows")
            if not self.upstream.startswith(("http://", "https://")):
                raise setting_error("upstream", f"must be an http(s):// URL, got {self.upstream!r}")
            if not self.upstream_token:
                raise setting_error(
                    "upstream_token",
                    "a replica needs a token (scope esgf:replicate) for its upstream",
                )
        elif self.upstream:
            raise setting_error("upstream", "only a replica follows an upstream (role is master)")
        return self
