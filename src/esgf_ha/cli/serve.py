"""`esgf-ha serve …`: run one service in the foreground, as a container does."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from esgf_ha.cli.options import parse_roots
from esgf_ha.cli.settings_cli import (
    SettingOption,
    SettingsCommand,
    build_settings,
    given,
)
from esgf_ha.common.logs import setup_logging

log = logging.getLogger("esgf_ha.server")
# seconds a busy thread may hold the interpreter lock while another waits
SWITCH_INTERVAL = 0.0005

if TYPE_CHECKING:
    from esgf_ha.common.auth import TokenVerifier
    from esgf_ha.common.server import Shutdown
    from esgf_ha.common.tls import TLSFiles
    from esgf_ha.datanode.settings import DataSettings
    from esgf_ha.index.follower import AnyFollower
    from esgf_ha.index.service import IndexService
    from esgf_ha.index.settings import IndexSettings


@click.group(
    epilog="""\b
Examples:
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:8080
  esgf-ha serve index --role master --state-dir state/master --listen 0.0.0.0:8443 --tls
  esgf-ha serve data --state-dir state/data --root esg_dataroot=/esg/data --index URL
  esgf-ha serve data ... --drain-seconds 3 --grace-seconds 20     # as in a rolling restart

On SIGTERM a service answers /readyz with 503 for --drain-seconds while still serving, then
lets the requests in flight finish (at most --grace-seconds) and exits 0. See
docs/deployment.md.
"""
)
def serve() -> None:
    """Run one service in the foreground."""


def option_group(*options: Callable[..., Any]) -> Callable[[Callable[..., Any]], Any]:
    """Apply `options` in the order given, so `--help` lists them in that order."""

    def apply(func: Callable[..., Any]) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def tls_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--tls, --tls-cert, --tls-key and --hostname, as every HTTP service takes them."""
    return option_group(
        click.option(
            "--tls/--no-tls",
            cls=SettingOption,
            default=None,
            help="serve HTTPS (a certificate is made on first start)",
        ),
        click.option(
            "--tls-cert",
            cls=SettingOption,
            type=click.Path(path_type=Path, exists=True),
            help="use this certificate chain (PEM) instead of a generated one",
        ),
        click.option(
            "--tls-key",
            cls=SettingOption,
            type=click.Path(path_type=Path, exists=True),
            help="private key for --tls-cert",
        ),
        click.option(
            "--hostname",
            "hostnames",
            cls=SettingOption,
            multiple=True,
            help="extra host name for the generated certificate (repeatable)",
        ),
    )(func)


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--header-timeout and --max-connections, as every HTTP service takes them."""
    return option_group(
        click.option(
            "--header-timeout",
            cls=SettingOption,
            type=click.FloatRange(min=0, min_open=True),
            help="close a connection that has not sent a request's headers within this "
            "many seconds",
        ),
        click.option(
            "--max-connections",
            cls=SettingOption,
            type=click.IntRange(min=1),
            help="open connections at most; over it the oldest idle one is closed",
        ),
    )(func)


def shutdown_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--drain-seconds and --grace-seconds: how the service stops on SIGTERM."""
    return option_group(
        click.option(
            "--drain-seconds",
            type=click.FloatRange(0, 600),
            default=0.0,
            show_default=True,
            envvar="ESGF_HA_DRAIN_SECONDS",
            help="on SIGTERM, answer /readyz 503 but keep serving this long, so health "
            "checks and the DNS move users away first [env ESGF_HA_DRAIN_SECONDS]",
        ),
        click.option(
            "--grace-seconds",
            type=click.FloatRange(1, 3600),
            default=20.0,
            show_default=True,
            envvar="ESGF_HA_GRACE_SECONDS",
            help="then wait this long for requests in flight before cancelling them "
            "[env ESGF_HA_GRACE_SECONDS]",
        ),
    )(func)


def shutdown_of(drain_seconds: float, grace_seconds: float) -> Shutdown:
    """The graceful-stop policy from the shared --drain-seconds/--grace-seconds options."""
    from esgf_ha.common.server import Shutdown

    return Shutdown(drain=drain_seconds, grace=grace_seconds)


class ServesTLS(Protocol):
    """The settings every server has for its certificate (IndexSettings, DataSettings)."""

    tls: bool
    state_dir: Path
    listen: str
    tls_cert: Path | None
    tls_key: Path | None
    hostnames: list[str]


def server_tls(
    settings: ServesTLS, client_ca: Path | None = None, *, client_certs: bool = True
) -> TLSFiles | None:
    """The certificate to serve: the operator's, or one made (once) in the state dir.

    With `client_certs` (a master index: certificates may publish), client certificates are
    verified against `client_ca` if given, else against the federation CA of the state dir
    (the one `esgf-ha cert issue` signs with), never against the served chain; without, none
    is asked for."""
    from esgf_ha.common.server import parse_listen
    from esgf_ha.common.tls import TLSFiles, ensure_ca, ensure_server_tls

    if not settings.tls:
        return None
    if settings.tls_cert:
        if not settings.tls_key:
            raise click.BadParameter("--tls-cert needs --tls-key", param_hint="--tls-key")
        trusted = (client_ca or ensure_ca(settings.state_dir / "tls")) if client_certs else None
        return TLSFiles(
            ca=settings.tls_cert, cert=settings.tls_cert, key=settings.tls_key, client_ca=trusted
        )
    files = ensure_server_tls(
        settings.state_dir, [parse_listen(settings.listen)[0], *settings.hostnames]
    )
    if not client_certs:
        files.client_ca = None
    elif client_ca is not None:
        files.client_ca = client_ca
    return files


@serve.command(
    "index",
    cls=SettingsCommand,
    settings="esgf_ha.index.settings:IndexSettings",
    epilog="""\b
Examples:
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:8080
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:0 --tls
  # tighter limits: searches stop after 10 s, connections must send headers within 15 s
  esgf-ha serve index --state-dir state/master --search-timeout 10 --header-timeout 15 \\
      --max-connections 2000
  curl 'http://127.0.0.1:8080/esg-search/search?project=CMIP6&format=application/solr%2Bjson'
  # a replica following the master (token: esgf-ha token issue --scope esgf:replicate)
  esgf-ha serve index --role replica --upstream http://127.0.0.1:8080 \\
      --token-file replicate.jwt --state-dir state/replica1 --listen 127.0.0.1:8081
  # searchable facets of a project no record has reached yet (see docs/index-node.md)
  esgf-ha serve index --state-dir state/master --facets-file facets.toml

The chosen address (useful with port 0) is logged and written to
<state-dir>/index.endpoint.json.
""",
)
@click.option(
    "--role",
    cls=SettingOption,
    type=click.Choice(["master", "replica"]),
    help="master takes publications; replicas are read-only",
)
@click.option(
    "--state-dir",
    cls=SettingOption,
    type=click.Path(path_type=Path),
    help="directory for the store, keys and TLS files (created if missing)",
)
@click.option("--listen", cls=SettingOption, help="HOST:PORT to listen on; port 0 picks a free one")
@tls_options
@click.option(
    "--client-ca",
    cls=SettingOption,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="CA certificate(s) (PEM) whose client certificates may publish "
    "[default: the federation CA, <state-dir>/tls/ca.pem]",
)
@click.option(
    "--jwks-url",
    cls=SettingOption,
    help="verify tokens against this external issuer's JWKS as well",
)
@click.option(
    "--token-issuer",
    cls=SettingOption,
    help="tokens from the --jwks-url issuer must carry this `iss`",
)
@click.option(
    "--token-audience",
    cls=SettingOption,
    help="tokens from the --jwks-url issuer must carry this `aud`",
)
@click.option(
    "--ws-anonymous-from",
    "ws_anonymous_from",
    cls=SettingOption,
    multiple=True,
    metavar="CIDR",
    help="accept unauthenticated esgcet /ws/* publications from this network "
    "(repeatable; esgcet 5.5.3 sends no credentials)",
)
@click.option(
    "--upstream",
    cls=SettingOption,
    metavar="URL",
    help="replica: the index to follow (master or replica)",
)
@click.option(
    "--token",
    "upstream_token",
    cls=SettingOption,
    help="replica: bearer token (scope esgf:replicate) for the upstream",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="replica: read the upstream token from this file (beats --token)",
)
@click.option(
    "--upstream-ca",
    cls=SettingOption,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="replica: CA certificate (PEM) to verify an HTTPS upstream",
)
@click.option(
    "--max-lag",
    cls=SettingOption,
    type=click.FloatRange(min=0, min_open=True),
    help="replica: /readyz fails when the known replication lag exceeds this many seconds",
)
@click.option(
    "--facets-file",
    cls=SettingOption,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="TOML file naming each project's facets, added to the built-in lists "
    "(see docs/index-node.md)",
)
@click.option(
    "--search-timeout",
    cls=SettingOption,
    type=click.FloatRange(min=0),
    help="stop a search after this many seconds with 503 and Retry-After (0: no limit)",
)
@click.option(
    "--workers",
    cls=SettingOption,
    metavar="N|auto",
    help="worker processes answering on the one port (auto: one per CPU); see docs/index-node.md",
)
@connection_options
@shutdown_options
@click.option("--log-level", default="info", show_default=True)
def serve_index(**options: Any) -> None:
    """Serve the ESGF search API (and, on the master, publication)."""
    from esgf_ha.common.auth import TokenVerifier
    from esgf_ha.index.facets import FacetConfigError, load_facet_profile
    from esgf_ha.index.service import IndexService

    settings = index_settings_from_cli(options)
    setup_logging(options["log_level"])
    try:
        facets = load_facet_profile(settings.facets_file)
    except FacetConfigError as exc:
        raise click.BadParameter(
            str(exc), param_hint="--facets-file / ESGF_HA_INDEX_FACETS_FILE"
        ) from None
    # a replica can re-fetch what a power cut loses, so it need not sync every commit
    service = IndexService.open(
        settings.state_dir, durable=settings.role == "master", facets=facets
    )
    tls_files = server_tls(settings, settings.client_ca, client_certs=settings.role == "master")
    # made before any worker forks: the first start creates the signing key, once
    verifier = TokenVerifier.from_state_dir(
        settings.state_dir,
        jwks_url=settings.jwks_url,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
    )
    shutdown = shutdown_of(options["drain_seconds"], options["grace_seconds"])
    parts = IndexParts(settings, service, verifier, tls_files, shutdown)
    if settings.worker_count() > 1:
        _serve_index_workers(parts)
    else:
        _serve_index_process(parts, None)


@dataclass
class IndexParts:
    """What `serve index` sets up once, before any worker process starts."""

    settings: IndexSettings
    service: IndexService
    verifier: TokenVerifier
    tls_files: TLSFiles | None
    shutdown: Shutdown


def _serve_index_process(parts: IndexParts, sock: socket.socket | None) -> None:
    """One process serving the index: the only one (`sock` None: bind `listen`), or a worker
    on the supervisor's socket. The replica follower runs in the only process or worker 0."""
    from esgf_ha.common.connections import ConnectionLimits
    from esgf_ha.common.server import serve as run
    from esgf_ha.common.server import serve_on
    from esgf_ha.index.app import create_app

    settings, service, tls_files = parts.settings, parts.service, parts.tls_files
    follower: AnyFollower | None = None
    if settings.role == "replica" and service.worker not in (None, 0):
        from esgf_ha.index.follower import FollowerView

        follower = FollowerView(service, str(settings.upstream))
    elif settings.role == "replica":
        from esgf_ha.index.follower import Follower

        follower = Follower(
            service, str(settings.upstream), str(settings.upstream_token), ca=settings.upstream_ca
        )
    app = create_app(settings, service, parts.verifier, follower)
    # Searches run on threads beside the event loop (and a replica's follower thread). A thread
    # that waits for the interpreter lock gets it only when the busy one yields it, by default
    # after up to 5 ms each time: the event loop then sat behind a long facet count before it
    # could read the next request or send a finished answer. Yielding every 0.5 ms keeps short
    # searches and a busy replica's searches near their idle latency.
    sys.setswitchinterval(SWITCH_INTERVAL)
    if follower is not None:
        follower.start()
    limits = ConnectionLimits(settings.header_timeout, settings.max_connections)
    try:
        if sock is None:
            run(
                app,
                settings.listen,
                name="index",
                state_dir=settings.state_dir,
                tls=tls_files,
                limits=limits,
                shutdown=parts.shutdown,
            )
        else:
            serve_on(sock, app, name="index", tls=tls_files, limits=limits, shutdown=parts.shutdown)
    finally:
        if follower is not None:
            follower.stop()
        service.close()


def _serve_index_workers(parts: IndexParts) -> None:
    """Several workers on one socket (see common/workers.py); each catches up with the
    others' commits through the store (IndexService.catch_up). Once all have stopped, the
    supervisor brings its own facet index up to date and saves the snapshot."""
    from esgf_ha.common.server import bind, parse_listen, url_of, write_endpoint
    from esgf_ha.common.workers import Supervisor

    settings, service, tls_files = parts.settings, parts.service, parts.tls_files
    # The supervisor holds the port without listening; each worker listens on its own socket
    # bound to it. One shared listening socket would let the first worker to wake take a whole
    # burst of new connections (asyncio accepts in a loop), and keep-alive clients would then
    # stay on that worker; separate sockets let the kernel spread connections evenly.
    sock = bind(*parse_listen(settings.listen), reuse_port=True, listen=False)
    host, port = sock.getsockname()[:2]
    url = url_of(sock, tls_files is not None)
    service.detach()

    def run_worker(index: int) -> None:
        service.attach(index)
        service.start_sync()
        own = bind(host, port, reuse_port=True)
        _serve_index_process(parts, own)

    write_endpoint(
        settings.state_dir, "index", {"url": url, "ca": str(tls_files.ca) if tls_files else None}
    )
    count = settings.worker_count()
    log.info("listening", extra={"service": "index", "url": url, "workers": count})
    Supervisor(count, run_worker).run()
    sock.close()
    service.attach(None)
    service.close()


def index_settings_from_cli(options: dict[str, Any]) -> IndexSettings:
    """The index's settings from `serve index`'s parsed options (`ctx.params`): given options,
    then `ESGF_HA_INDEX_*`, then defaults. A bad value is a usage error, not a traceback."""
    from esgf_ha.index.settings import IndexSettings

    values = given(options, IndexSettings.model_fields)
    token_file = options.get("token_file")
    if token_file is not None:
        values["upstream_token"] = token_file.read_text().strip()
    return build_settings(IndexSettings, values, serve_index, {"upstream_token": "--token-file"})


@serve.command(
    "data",
    cls=SettingsCommand,
    settings="esgf_ha.datanode.settings:DataSettings",
    epilog="""\b
Examples:
  esgf-ha serve data --state-dir state/data --listen 127.0.0.1:8090 \\
      --root esg_dataroot=/esg/data --index http://127.0.0.1:8080
  esgf-ha serve data --state-dir state/data --listen 0.0.0.0:8443 --tls \\
      --root esg_dataroot=/esg/data --root restricted=/esg/restricted \\
      --restricted restricted --token-public-key state/master/keys/token-signing.pub.pem
  curl -I http://127.0.0.1:8090/thredds/fileServer/esg_dataroot/CMIP6/.../file.nc
  esgf-ha serve data --root esg_dataroot=/esg/data --write-nginx-config nginx.conf \\
      --nginx-listen 0.0.0.0:80 --listen 127.0.0.1:8090

Files are served at /thredds/fileServer/<root>/<path>, OPeNDAP at /thredds/dodsC/<root>/<path>,
catalogs at /thredds/catalog/catalog.xml. The chosen address (useful with port 0) is logged and
written to <state-dir>/data.endpoint.json.
""",
)
@click.option(
    "--state-dir",
    cls=SettingOption,
    type=click.Path(path_type=Path),
    help="directory for the endpoint file and TLS files (created if missing)",
)
@click.option("--listen", cls=SettingOption, help="HOST:PORT to listen on; port 0 picks a free one")
@click.option(
    "--root",
    "roots",
    cls=SettingOption,
    multiple=True,
    metavar="NAME=PATH",
    help="a data root: URL name and directory (repeatable; at least one, here or in the "
    'environment as JSON: {"esg_dataroot": "/esg/data"})',
)
@click.option(
    "--index",
    "index_url",
    cls=SettingOption,
    help="search service URL to learn checksums, replicas and catalogs from",
)
@click.option(
    "--index-ca",
    cls=SettingOption,
    type=click.Path(path_type=Path, exists=True),
    help="CA bundle (PEM) that signs an HTTPS index",
)
@click.option(
    "--data-node",
    cls=SettingOption,
    help="this node's name as records spell data_node (default: each request's Host header)",
)
@click.option(
    "--restricted",
    cls=SettingOption,
    multiple=True,
    metavar="NAME",
    help="root whose files need a bearer token with scope esgf:download (repeatable)",
)
@click.option(
    "--token-public-key",
    "token_public_keys",
    cls=SettingOption,
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="Ed25519 public key (PEM) that signs download tokens (repeatable)",
)
@click.option(
    "--jwks-url", cls=SettingOption, help="verify download tokens against this issuer's JWKS"
)
@tls_options
@click.option(
    "--accel-prefix",
    cls=SettingOption,
    help="nginx mode: answer file requests with X-Accel-Redirect to this internal prefix",
)
@click.option(
    "--write-nginx-config",
    type=click.Path(path_type=Path),
    help="write an nginx config for the nginx mode to this file and exit",
)
@click.option(
    "--nginx-listen",
    default="0.0.0.0:80",
    show_default=True,
    help="HOST:PORT nginx listens on (with --write-nginx-config)",
)
@click.option(
    "--nginx-dir",
    type=click.Path(path_type=Path),
    help="directory for nginx's pid file, temporary files and error log "
    "(with --write-nginx-config; default: system locations)",
)
@connection_options
@shutdown_options
@click.option("--log-level", default="info", show_default=True)
def serve_data(**options: Any) -> None:
    """Serve data files, THREDDS catalogs and OPeNDAP from DRS directory trees."""
    from esgf_ha.common.connections import ConnectionLimits
    from esgf_ha.common.server import serve as run
    from esgf_ha.datanode.app import create_app
    from esgf_ha.datanode.files import SendfileProtocol
    from esgf_ha.datanode.index_client import IndexClient
    from esgf_ha.datanode.service import DataNode
    from esgf_ha.datanode.tokens import verifier_for

    settings = data_settings_from_cli(options)
    setup_logging(options["log_level"])
    if options["write_nginx_config"] is not None:
        _write_nginx_config(
            settings, options["write_nginx_config"], options["nginx_listen"], options["nginx_dir"]
        )
        return
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # the data node authenticates downloads with tokens: it asks for no client certificate
    tls_files = server_tls(settings, client_certs=False)
    index = None
    if settings.index_url:
        index = IndexClient(
            settings.index_url,
            ca=settings.index_ca,
            ttl=settings.lookup_ttl,
            cache_size=settings.lookup_cache_size,
        )
    node = DataNode(settings, index)
    app = create_app(node, verifier_for(settings))
    run(
        app,
        settings.listen,
        name="data",
        state_dir=settings.state_dir,
        tls=tls_files,
        protocol=SendfileProtocol,
        limits=ConnectionLimits(settings.header_timeout, settings.max_connections),
        shutdown=shutdown_of(options["drain_seconds"], options["grace_seconds"]),
    )


def data_settings_from_cli(options: dict[str, Any]) -> DataSettings:
    """The data node's settings from `serve data`'s parsed options (`ctx.params`): given
    options, then `ESGF_HA_DATA_*`, then defaults. A bad value is a usage error."""
    from esgf_ha.datanode.nginx import ACCEL_PREFIX
    from esgf_ha.datanode.settings import DataSettings

    values = given(options, DataSettings.model_fields)
    if "roots" in values:
        values["roots"] = parse_roots(tuple(values["roots"]))
    settings = build_settings(DataSettings, values, serve_data, {})
    if options.get("write_nginx_config") is not None and settings.accel_prefix is None:
        # the nginx mode needs a prefix; ours unless the operator chose one
        settings = settings.model_copy(update={"accel_prefix": ACCEL_PREFIX})
    return settings


def _write_nginx_config(
    settings: DataSettings, path: Path, nginx_listen: str, nginx_dir: Path | None
) -> None:
    from esgf_ha.datanode.nginx import render_config

    where: dict[str, Any] = {}
    if nginx_dir is not None:
        nginx_dir = nginx_dir.resolve()
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (nginx_dir / kind).mkdir(parents=True, exist_ok=True)
        where = {
            "pid_file": str(nginx_dir / "nginx.pid"),
            "error_log": str(nginx_dir / "error.log"),
            "temp_dir": str(nginx_dir),
        }
    try:
        text = render_config(settings, nginx_listen, **where)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--nginx-listen") from None
    path.write_text(text)
    click.echo(f"wrote {path}; start this node with --accel-prefix {settings.accel_prefix}")
