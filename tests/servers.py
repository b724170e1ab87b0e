"""Start our real services as subprocesses on ephemeral loopback ports, for tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from esgf_ha.common.auth import issue_token
from esgf_ha.common.server import ServiceNotReady, wait_until_ready


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for services that must come back on it)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def logged(log_path: Path | None, *, level: str = "", msg: str = "") -> list[dict[str, Any]]:
    """A service's structured log (one JSON object a line): the records of `level` and of
    `msg`, when given."""
    assert log_path is not None, "the service was never started"
    records = [orjson.loads(line) for line in log_path.read_text().splitlines() if line]
    return [r for r in records if level in ("", r.get("level")) and msg in ("", r.get("msg"))]


def spawn(
    state_dir: Path, name: str, args: list[str], listen: str, tls: bool, extra_args: list[str]
) -> tuple[subprocess.Popen, Path]:
    """`esgf-ha <args>` as a child process on `listen`, not waited for. `extra_args` come last,
    so a test's own `--listen` wins."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / f"{name}.endpoint.json").unlink(missing_ok=True)
    command = [sys.executable, "-m", "esgf_ha", *args, "--state-dir", str(state_dir),
               "--listen", listen, *(["--tls"] if tls else []), *extra_args]  # fmt: skip
    log_path = state_dir / "server.log"
    # the child holds its own copy of the descriptor: ours is closed at once
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=log), log_path


def wait_ready(
    state_dir: Path, name: str, proc: subprocess.Popen, tls: bool, timeout: float, log_path: Path
) -> str:
    """The service's URL once its /readyz answers 200; its log in the error otherwise."""
    try:
        # the CA is made by the server on its first start; the test clients verify with it
        return wait_until_ready(state_dir, name, proc, timeout=timeout, verify=not tls)
    except ServiceNotReady as exc:
        raise RuntimeError(f"{exc}: {log_path.read_text()[-2000:]}") from None


def wait_answering(
    state_dir: Path, name: str, proc: subprocess.Popen, timeout: float = 60.0
) -> tuple[str, httpx.Response]:
    """The URL and /readyz answer of a started service that answers HTTP, ready or not (for
    services a test expects to stay unready)."""
    endpoint = state_dir / f"{name}.endpoint.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} service exited with status {proc.returncode}")
        if endpoint.exists():
            info = orjson.loads(endpoint.read_bytes())
            if info.get("pid") == proc.pid:
                try:
                    return info["url"], httpx.get(info["url"] + "/readyz", verify=False, timeout=5)
                except httpx.HTTPError:
                    pass
        time.sleep(0.05)
    raise RuntimeError(f"the {name} service did not answer within {timeout:.0f} s")


@dataclass
class IndexServer:
    state_dir: Path
    role: str = "master"
    tls: bool = False
    extra_args: list[str] = field(default_factory=list)
    listen: str = "127.0.0.1:0"
    proc: subprocess.Popen | None = None
    url: str = ""
    log_path: Path | None = None
    # worker processes (`--workers`); 1 runs the one-process server as before
    workers: int = 1

    def spawn(self) -> None:
        args = ["serve", "index", "--role", self.role]
        args += ["--workers", str(self.workers)] if self.workers != 1 else []
        # kept on self before any wait, so stop() and kill() reach a process that never got ready
        self.proc, self.log_path = spawn(
            self.state_dir, "index", args, self.listen, self.tls, self.extra_args
        )

    def start(self, timeout: float = 60.0) -> IndexServer:
        self.spawn()
        assert self.proc and self.log_path
        self.url = wait_ready(self.state_dir, "index", self.proc, self.tls, timeout, self.log_path)
        return self

    def start_unready(self, timeout: float = 60.0) -> httpx.Response:
        """Start a service the test expects not to become ready; its first /readyz answer."""
        self.spawn()
        assert self.proc
        self.url, ready = wait_answering(self.state_dir, "index", self.proc, timeout)
        return ready

    @property
    def ca(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    def client(self, **kwargs) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.ca)) if self.tls else True
        return httpx.Client(base_url=self.url, timeout=60, verify=verify, **kwargs)

    def token(self, *scopes: str) -> str:
        return issue_token(self.state_dir, list(scopes or ("esgf:publish",)), subject="tests")

    def auth(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*scopes)}"}

    def publish(self, batch: dict) -> httpx.Response:
        with self.client() as c:
            return c.post("/api/v1/publish", content=orjson.dumps(batch), headers=self.auth())

    def search(self, **params: object) -> dict:
        params = {"format": "application/solr+json", **params}
        with self.client() as c:
            r = c.get("/esg-search/search", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class DataServer:
    """`esgf-ha serve data` as a subprocess; `roots` maps root names to directories."""

    state_dir: Path
    roots: dict[str, Path]
    index_url: str | None = None
    tls: bool = False
    extra_args: list[str] = field(default_factory=list)
    listen: str = "127.0.0.1:0"
    proc: subprocess.Popen | None = None
    url: str = ""
    log_path: Path | None = None

    def start(self, timeout: float = 60.0) -> DataServer:
        args = ["serve", "data", *[f"--root={name}={path}" for name, path in self.roots.items()]]
        args += ["--index", self.index_url] if self.index_url else []
        self.proc, self.log_path = spawn(
            self.state_dir, "data", args, self.listen, self.tls, self.extra_args
        )
        self.url = wait_ready(self.state_dir, "data", self.proc, self.tls, timeout, self.log_path)
        return self

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    @property
    def ca(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    def client(self, **kwargs) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.ca)) if self.tls else True
        return httpx.Client(base_url=self.url, timeout=60, verify=verify, **kwargs)

    def stop(self) -> None:
        IndexServer.stop(self)  # type: ignore[arg-type]

    def kill(self) -> None:
        IndexServer.kill(self)  # type: ignore[arg-type]
