"""Run an ASGI app with uvicorn on a socket we bind ourselves, so `--listen HOST:0` works:
the chosen address is logged and written to `<state-dir>/<name>.endpoint.json` for tests and
supervisors to read."""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from esgf_ha.common.connections import ConnectionLimits, GuardedProtocol
from esgf_ha.common.edge import not_ready_bytes
from esgf_ha.common.index_client import IndexClient, IndexClientError
from esgf_ha.common.retry import Backoff
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


ONCE = Backoff(retries=0)  # the wait loop is the retry


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
                probe = IndexClient(info["url"], verify=verify, timeout=2, retry=ONCE)
                try:
                    if probe.readiness()[0] == 200:
                        return str(info["url"])
                except IndexClientError:
                    pass
                finally:
                    probe.close()
        time.sleep(0.05)
    raise ServiceNotReady(f"the {name} service was not ready within {timeout:.0f} s")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to `host:port` (0: any free port), listening unless `listen` is
    False. With `reuse_port`, other sockets of this user may bind the same port, and the
    kernel spreads new connections evenly over those that listen (see common/workers.py)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
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


@dataclass(frozen=True)
class Shutdown:
    """How a service stops on SIGTERM/SIGINT, so a rolling restart loses no request.

    1. `drain` seconds: `/readyz` answers 503 (health checkers, the DNS and orchestrators stop
       sending users here) while every request is still served, each answer with
       `Connection: close` so clients holding a kept-alive connection move elsewhere;
    2. the listening socket closes and the requests in flight finish, for at most `grace`
       seconds (then they are cancelled);
    3. the process exits 0. A second signal skips what is left of the drain.
    """

    drain: float = 0.0
    grace: float = 20.0


class Draining:
    """ASGI wrapper that answers `/readyz` with 503 and asks clients to close their connection
    once a stop has begun; otherwise it passes everything through untouched."""

    def __init__(self, app: Any, service: str = "") -> None:
        self.app = app
        self.service = service
        self.draining = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.draining or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/readyz":
            body = not_ready_bytes(self.service, "shutting down")
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


def graceful(server: uvicorn.Server, app: Any, shutdown: Shutdown, service: str = "") -> Draining:
    """Wrap `app` and replace uvicorn's signal handling with the stop described in `Shutdown`.

    The app's `state.exit_hooks` run when the drain ends and the stop begins (long-polls end
    at once instead of holding the shutdown). uvicorn's own handler re-raises the signal once it has
    stopped, so the process would die of it; a clean stop here exits 0 instead."""
    wrapped = Draining(app, service)
    exit_hooks = list(getattr(getattr(app, "state", None), "exit_hooks", []))
    server.config.timeout_graceful_shutdown = max(1, round(shutdown.grace))
    timer: threading.Timer | None = None

    def stop_now() -> None:
        if not server.should_exit:
            # long-polls would otherwise hold the stop for their whole wait; during the drain
            # they are left waiting, since answering them early only brings them straight back
            for hook in exit_hooks:
                hook()
        server.should_exit = True

    def on_signal(sig: int, frame: Any) -> None:
        nonlocal timer
        if wrapped.draining:  # asked twice: stop without waiting for the rest of the drain
            if timer is not None:
                timer.cancel()
            if server.should_exit:
                server.force_exit = True
            stop_now()
            return
        wrapped.draining = True
        log.info("stopping", extra={"signal": signal.Signals(sig).name, "drain": shutdown.drain})
        if shutdown.drain > 0:
            timer = threading.Timer(shutdown.drain, stop_now)
            timer.daemon = True
            timer.start()
        else:
            stop_now()

    server.handle_exit = on_signal  # type: ignore[method-assign]
    return wrapped


def serve(
    app: Any,
    listen: str,
    *,
    name: str,
    state_dir: Path,
    tls: TLSFiles | None = None,
    protocol: type[H11Protocol] = PeerCertProtocol,
    limits: ConnectionLimits | None = None,
    shutdown: Shutdown | None = None,
) -> None:
    host, port = parse_listen(listen)
    sock = bind(host, port)
    url = url_of(sock, tls is not None)
    write_endpoint(state_dir, name, {"url": url, "ca": str(tls.ca) if tls else None})
    log.info("listening", extra={"service": name, "url": url})
    serve_on(sock, app, name=name, tls=tls, protocol=protocol, limits=limits, shutdown=shutdown)


def serve_on(
    sock: socket.socket,
    app: Any,
    *,
    name: str,
    tls: TLSFiles | None = None,
    protocol: type[H11Protocol] = PeerCertProtocol,
    limits: ConnectionLimits | None = None,
    shutdown: Shutdown | None = None,
) -> None:
    """Serve `app` on a socket already bound and listening (one of several workers may)."""
    config = uvicorn_config(app, tls, protocol, limits)
    server = uvicorn.Server(config)
    config.app = graceful(server, app, shutdown or Shutdown(), name)
    server.run(sockets=[sock])
