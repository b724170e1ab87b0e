"""Settings of one data node: everything it needs, in one object, from the CLI or env."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from esgf_ha.common.settings import (
    ServiceSettings,
    certificate_given,
    check_files,
    check_listen,
    setting_error,
)

ROOT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class DataSettings(ServiceSettings):
    """One data node's settings. Each field is read from `ESGF_HA_DATA_<FIELD>` unless the
    command line gives it; `_check` holds the rules that tie fields together."""

    model_config = SettingsConfigDict(env_prefix="ESGF_HA_DATA_", extra="forbid")

    state_dir: Path = Field(Path("state/data"), description="endpoint file, TLS files")
    listen: str = Field("127.0.0.1:8090", description="HOST:PORT to listen on (port 0: any)")
    roots: dict[str, Path] = Field(
        default_factory=dict,
        description="data roots: URL name -> directory (`--root esg_dataroot=/esg/data`; "
        'in the environment JSON: `{"esg_dataroot": "/esg/data"}`)',
    )
    restricted: list[str] = Field(
        default_factory=list, description="roots whose files need a token with esgf:download"
    )
    index_url: str | None = Field(
        None, description="search service the node asks for checksums, replicas and catalogs"
    )
    index_ca: Path | None = Field(None, description="CA bundle to verify an HTTPS index")
    data_node: str | None = Field(
        None,
        description="this node's name as records spell `data_node` (host[:port]); "
        "default: the Host header of each request",
    )
    tls: bool = Field(False, description="serve HTTPS with a certificate from the state dir")
    tls_cert: Path | None = Field(None, description="certificate chain (PEM) instead of ours")
    tls_key: Path | None = Field(None, description="private key (PEM) for tls_cert")
    hostnames: list[str] = Field(default_factory=list, description="names for our certificate")
    token_public_keys: list[Path] = Field(
        default_factory=list, description="Ed25519 public keys (PEM) that sign download tokens"
    )
    jwks_url: str | None = Field(None, description="external token issuer's JWKS URL")
    lookup_ttl: float = Field(300.0, description="seconds an index answer about a file is kept")
    lookup_cache_size: int = Field(100_000, description="files whose index answer is kept")
    sendfile_min_bytes: int = Field(
        64 * 1024, description="bodies at least this large go out with sendfile (plain HTTP)"
    )
    sendfile_threads: int = Field(
        64, ge=0, description="transfers sent from worker threads at once (0: event loop only)"
    )
    chunk_bytes: int = Field(1024 * 1024, description="read size when sendfile is not used")
    opendap_max_bytes: int = Field(
        512 * 1024 * 1024, description="largest OPeNDAP data response (413 above)"
    )
    header_timeout: float = Field(
        20.0, gt=0, description="seconds a connection may take to send a request's headers"
    )
    max_connections: int = Field(
        1000, ge=1, description="open connections; over it the oldest idle one is closed"
    )
    accel_prefix: str | None = Field(
        None,
        description="nginx mode: answer authorised file requests with X-Accel-Redirect to "
        "this internal location prefix instead of sending the bytes",
    )

    @model_validator(mode="after")
    def _check(self) -> DataSettings:
        check_listen("listen", self.listen)
        if not self.roots:
            raise setting_error("roots", "at least one data root is needed (NAME=PATH)")
        for name in self.roots:
            if not ROOT_NAME.match(name):
                raise setting_error(
                    "roots", f"root name {name!r} must be letters, digits, _ . - only"
                )
        unknown = sorted(set(self.restricted) - set(self.roots))
        if unknown:
            raise setting_error("restricted", f"names unknown roots: {', '.join(unknown)}")
        if self.restricted and not (self.token_public_keys or self.jwks_url):
            raise setting_error(
                "restricted", "restricted roots need token_public_keys or jwks_url to check tokens"
            )
        if self.accel_prefix is not None and not self.accel_prefix.startswith("/"):
            raise setting_error("accel_prefix", "the X-Accel-Redirect prefix must start with /")
        if certificate_given(self.tls_cert, self.tls_key):
            self.tls = True
        check_files(
            {
                "tls_cert": self.tls_cert,
                "tls_key": self.tls_key,
                "index_ca": self.index_ca,
                "token_public_keys": self.token_public_keys,
            }
        )
        return self
