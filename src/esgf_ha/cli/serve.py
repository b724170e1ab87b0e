"""`esgf-ha serve …`: run one service in the foreground, as a container does."""

from __future__ import annotations

from pathlib import Path

import click

from esgf_ha.common.logs import setup_logging


@click.group(
    epilog="""\b
Examples:
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:8080
  esgf-ha serve index --role master --state-dir state/master --listen 0.0.0.0:8443 --tls
"""
)
def serve() -> None:
    """Run one service in the foreground."""


@serve.command(
    "index",
    epilog="""\b
Examples:
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:8080
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:0 --tls
  curl 'http://127.0.0.1:8080/esg-search/search?project=CMIP6&format=application/solr%2Bjson'
  # a replica following the master (token: esgf-ha token issue --scope esgf:replicate)
  esgf-ha serve index --role replica --upstream http://127.0.0.1:8080 \\
      --token-file replicate.jwt --state-dir state/replica1 --listen 127.0.0.1:8081

The chosen address (useful with port 0) is logged and written to
<state-dir>/index.endpoint.json.
""",
)
@click.option(
    "--role",
    type=click.Choice(["master", "replica"]),
    default="master",
    show_default=True,
    help="master takes publications; replicas are read-only",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="directory for the store, keys and TLS files (created if missing)",
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT to listen on; port 0 picks a free one",
)
@click.option("--tls", is_flag=True, help="serve HTTPS (a certificate is made on first start)")
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, exists=True),
    help="use this certificate chain (PEM) instead of a generated one",
)
@click.option(
    "--tls-key", type=click.Path(path_type=Path, exists=True), help="private key for --tls-cert"
)
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="extra host name for the generated certificate (repeatable)",
)
@click.option("--jwks-url", help="verify tokens against this external issuer's JWKS as well")
@click.option(
    "--ws-anonymous-from",
    "ws_anonymous_from",
    multiple=True,
    metavar="CIDR",
    help="accept unauthenticated esgcet /ws/* publications from this network "
    "(repeatable; esgcet 5.5.3 sends no credentials)",
)
@click.option("--upstream", metavar="URL", help="replica: the index to follow (master or replica)")
@click.option(
    "--token",
    envvar="ESGF_HA_UPSTREAM_TOKEN",
    help="replica: bearer token (scope esgf:replicate) for the upstream "
    "[env ESGF_HA_UPSTREAM_TOKEN]",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="replica: read the upstream token from this file",
)
@click.option(
    "--upstream-ca",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="replica: CA certificate (PEM) to verify an HTTPS upstream",
)
@click.option(
    "--max-lag",
    type=float,
    default=30.0,
    show_default=True,
    help="replica: /readyz fails when the known replication lag exceeds this many seconds",
)
@click.option("--log-level", default="info", show_default=True)
def serve_index(
    role: str,
    state_dir: Path,
    listen: str,
    tls: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    hostnames: tuple[str, ...],
    jwks_url: str | None,
    ws_anonymous_from: tuple[str, ...],
    upstream: str | None,
    token: str | None,
    token_file: Path | None,
    upstream_ca: Path | None,
    max_lag: float,
    log_level: str,
) -> None:
    """Serve the ESGF search API (and, on the master, publication)."""
    from esgf_ha.common.auth import TokenVerifier
    from esgf_ha.common.server import parse_listen
    from esgf_ha.common.server import serve as run
    from esgf_ha.common.tls import TLSFiles, ensure_server_tls
    from esgf_ha.index.app import create_app
    from esgf_ha.index.service import IndexService
    from esgf_ha.index.settings import IndexSettings

    setup_logging(log_level)
    if token_file is not None:
        token = token_file.read_text().strip()
    if role == "replica":
        if not upstream:
            raise click.BadParameter("a replica needs --upstream URL", param_hint="--upstream")
        if not upstream.startswith(("http://", "https://")):
            raise click.BadParameter("must be an http(s):// URL", param_hint="--upstream")
        if not token:
            raise click.BadParameter(
                "a replica needs --token or --token-file (scope esgf:replicate)",
                param_hint="--token",
            )
    elif upstream:
        raise click.BadParameter("only a replica follows an upstream", param_hint="--upstream")
    settings = IndexSettings(
        role="replica" if role == "replica" else "master",
        state_dir=state_dir,
        listen=listen,
        tls=tls or bool(tls_cert),
        tls_cert=tls_cert,
        tls_key=tls_key,
        hostnames=list(hostnames),
        jwks_url=jwks_url,
        ws_anonymous_from=list(ws_anonymous_from),
        upstream=upstream,
        upstream_token=token,
        upstream_ca=upstream_ca,
        max_lag=max_lag,
    )
    try:
        parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    # a replica can re-fetch what a power cut loses, so it need not sync every commit
    service = IndexService.open(state_dir, durable=settings.role == "master")
    verifier = TokenVerifier.from_state_dir(state_dir, jwks_url=jwks_url)
    tls_files = None
    if settings.tls:
        if tls_cert:
            if not tls_key:
                raise click.BadParameter("--tls-cert needs --tls-key", param_hint="--tls-key")
            tls_files = TLSFiles(ca=tls_cert, cert=tls_cert, key=tls_key)
        else:
            host = parse_listen(listen)[0]
            tls_files = ensure_server_tls(state_dir, [host, *hostnames])
    follower = None
    if settings.role == "replica":
        import ssl

        from esgf_ha.index.follower import Follower

        follower = Follower(
            service,
            str(settings.upstream),
            str(settings.upstream_token),
            verify=ssl.create_default_context(cafile=str(upstream_ca)) if upstream_ca else True,
        )
    app = create_app(settings, service, verifier, follower)
    if follower is not None:
        follower.start()
    try:
        run(app, listen, name="index", state_dir=state_dir, tls=tls_files)
    finally:
        if follower is not None:
            follower.stop()
        service.close()
