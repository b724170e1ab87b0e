"""Run an ASGI app with uvicorn on a socket we bind ourselves, so `--listen HOST:0` works:
the chosen address is logged and written to `<state-dir>/<name>.endpoint.json` for tests and
supervisors to read."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from esgf_ha.common.connections import ConnectionLimits, GuardedProtocol
from esgf_ha.common.tls import TLSFiles

log = logging.getLogger("esgf_ha.server")


class PeerCertProtocol(GuardedProtocol):
    """Hands the verified TLS client certificate (if any) to the app as `request.state`."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # headers and body leave as two writes: without this, the second waits for the
            # client's delayed ACK (~40 ms) on every reused connection
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self.app_state = {**self.app_state, "tls_client_cert": der}


class ServiceNotReady(RuntimeError):
    pass


def wait_until_ready(
    state_dir: Path,
    name: str,
    proc: subprocess.Popen,
    *,
    timeout: float = 60.0,
    verify: ssl.SSLContext | bool = True,
) -> str:
    """The URL of a service started with port 0, once its endpoint file names this process
    and `/readyz` answers 200."""
    endpoint = state_dir / f"{name}.endpoint.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceNotReady(f"the {name} service exited with status {proc.returncode}")
        if endpoint.exists():
            info = orjson.loads(endpoint.read_bytes())
            if info.get("pid") == proc.pid:
                try:
                    ready = httpx.get(info["url"] + "/readyz", verify=verify, timeout=2)
                    if ready.status_code == 200:
                        return str(info["url"])
                except httpx.HTTPError:
                    pass
        time.sleep(0.05)
    raise ServiceNotReady(f"the {name} service was not ready within {timeout:.0f} s")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: Any,
    tls: TLSFiles | None = None,
    protocol: type[H11Protocol] = PeerCertProtocol,
    limits: ConnectionLimits | None = None,
) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        http=protocol,
        ws="none",
        lifespan="on",
        timeout_keep_alive=30,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        ssl_ca_certs=str(tls.client_ca) if tls and tls.client_ca else None,
        ssl_cert_reqs=ssl.CERT_OPTIONAL if tls and tls.client_ca else ssl.CERT_NONE,
    )
    # read by GuardedProtocol (common/connections.py)
    config.connection_limits = limits or ConnectionLimits()  # type: ignore[attr-defined]
    return config


def url_of(sock: socket.socket, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def write_endpoint(state_dir: Path, name: str, info: dict[str, Any]) -> None:
    """Atomically publish where a service listens (readers never see a half-written file)."""
    endpoint = state_dir / f"{name}.endpoint.json"
    tmp = endpoint.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({**info, "pid": os.getpid()}))
    tmp.replace(endpoint)


def add_exit_hooks(server: uvicorn.Server, app: Any) -> None:
    """Run the app's `state.exit_hooks` as soon as a stop is asked for, before uvicorn waits
    for open requests to finish (long-polls end at once instead of holding the shutdown)."""
    exit_hooks = list(getattr(getattr(app, "state", None), "exit_hooks", []))
    if not exit_hooks:
        return
    handle_exit = server.handle_exit

    def on_exit(sig: int, frame: Any) -> None:
        handle_exit(sig, frame)
        for hook in exit_hooks:
            hook()

    server.handle_exit = on_exit  # type: ignore[method-assign]


def serve(
    app: Any,
    listen: str,
    *,
    name: str,
    state_dir: Path,
    tls: TLSFiles | None = None,
    protocol: type[H11Protocol] = PeerCertProtocol,
    limits: ConnectionLimits | None = None,
) -> None:
    host, port = parse_listen(listen)
    sock = bind(host, port)
    url = url_of(sock, tls is not None)
    server = uvicorn.Server(uvicorn_config(app, tls, protocol, limits))
    add_exit_hooks(server, app)
    write_endpoint(state_dir, name, {"url": url, "ca": str(tls.ca) if tls else None})
    log.info("listening", extra={"service": name, "url": url})
    server.run(sockets=[sock])
