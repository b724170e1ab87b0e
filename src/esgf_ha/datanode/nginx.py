"""nginx in front of the data node (production mode): nginx passes every request to the
node, which checks the path and the token and answers file requests with an empty
`X-Accel-Redirect`; nginx then sends the bytes itself (sendfile, ranges, HEAD) from an
`internal` location that maps each root name to its directory."""

from __future__ import annotations

import re

from esgf_ha.common.server import parse_listen
from esgf_ha.datanode.settings import DataSettings

ACCEL_PREFIX = "/_esgf_internal"
_SAFE_PATH = re.compile(r"^[^\s;{}'\"\\$#]+$")


def render_config(
    settings: DataSettings,
    nginx_listen: str,
    *,
    pid_file: str = "/run/esgf-ha-nginx.pid",
    error_log: str = "stderr",
    temp_dir: str | None = None,
    daemon: bool | None = None,
) -> str:
    """A complete nginx.conf; `temp_dir` keeps nginx's temporary files out of system paths
    (tests and benchmarks run it unprivileged in a scratch directory)."""
    host, port = parse_listen(nginx_listen)
    up_host, up_port = parse_listen(settings.listen)
    if up_port == 0:
        raise ValueError("the node's --listen needs a fixed port for nginx to proxy to")
    up_host = "127.0.0.1" if up_host in ("0.0.0.0", "") else up_host
    scheme = "https" if settings.tls else "http"
    prefix = (settings.accel_prefix or ACCEL_PREFIX).rstrip("/")
    internal = []
    for name, path in settings.roots.items():
        real = str(path.resolve())
        if not _SAFE_PATH.match(real):
            raise ValueError(f"root path {real!r} has characters nginx config cannot hold")
        internal.append(
            f"        location {prefix}/{name}/ {{\n"
            f"            internal;\n"
            f"            alias {real}/;\n"
            f"            sendfile on;\n"
            f"            tcp_nopush on;\n"
            # an internal redirect drops the node's headers: carry the digests over
            f"            add_header Digest $upstream_http_digest;\n"
            f"            add_header Repr-Digest $upstream_http_repr_digest;\n"
            f"        }}\n"
        )
    temps = ""
    if temp_dir:
        temps = "".join(
            f"        {kind}_temp_path {temp_dir}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
    listen_host = f"[{host}]" if ":" in host else host
    daemon_line = "" if daemon is None else f"daemon {'on' if daemon else 'off'};\n"
    return f"""# written by `esgf-ha serve data --write-nginx-config`
{daemon_line}worker_processes auto;
pid {pid_file};
error_log {error_log} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    types {{ application/x-netcdf nc; }}
    default_type application/octet-stream;
{temps}    server {{
        listen {listen_host}:{port};
        location / {{
            proxy_pass {scheme}://{up_host}:{up_port};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
{"".join(internal)}    }}
}}
"""
