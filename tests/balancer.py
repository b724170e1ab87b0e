"""Helpers for the DNS load-balancer tests: our balancer as a subprocess, real BIND, `dig`."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import yaml

from tests.servers import free_port


def dig(port: int, name: str, rdtype: str = "A", *extra: str, server: str = "127.0.0.1") -> str:
    """`dig +short` (or the full answer with extra flags) against a server on a loopback port."""
    dig_bin = shutil.which("dig")
    assert dig_bin, "dig is installed by `make system-deps` (Debian package bind9-dnsutils)"
    args = [dig_bin, f"@{server}", "-p", str(port), name, rdtype, "+time=1", "+tries=1", *extra]
    if not extra:
        args.append("+short")
    out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    return out.stdout


def answers(port: int, name: str, rounds: int = 1, server: str = "127.0.0.1") -> set[str]:
    seen: set[str] = set()
    for _ in range(rounds):
        seen |= {line for line in dig(port, name, server=server).split() if line}
    return seen


def wait_for(predicate, timeout: float, step: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    """Seconds until predicate() held; raises when it did not within the timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


@dataclass
class Balancer:
    config_path: Path
    state_dir: Path
    server: str | None = None  # which of `dns.servers`, when there are several
    proc: subprocess.Popen | None = None
    url: str = ""
    dns_port: int = 0

    def start(self, timeout: float = 30.0) -> Balancer:
        endpoint = self.state_dir / "dns.endpoint.json"
        endpoint.unlink(missing_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # the child holds its own copy of the descriptor: ours is closed at once
        with open(self.state_dir / "dns.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "esgf_ha", "serve", "dns", "-c", str(self.config_path),
                 "--state-dir", str(self.state_dir),
                 *(["--server", self.server] if self.server else [])],
                stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.state_dir / "dns.log").read_text()[-2000:]
            if endpoint.exists():
                info = orjson.loads(endpoint.read_bytes())
                if info.get("pid") == self.proc.pid:
                    self.url, self.dns_port = info["url"], int(info.get("dns_port", 0))
                    try:
                        if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                            return self
                    except httpx.HTTPError:
                        pass
            time.sleep(0.05)
        raise AssertionError("the balancer did not become ready")

    def status(self) -> dict:
        return httpx.get(self.url + "/api/v1/status", timeout=5).json()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Bind:
    """A real BIND 9 primary for one zone, on a loopback port, accepting TSIG-signed updates."""

    workdir: Path
    zone: str
    key_name: str = "esgf-ha-update"
    address: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.secret = base64.b64encode(os.urandom(32)).decode()

    def start(self) -> Bind:
        named = shutil.which("named") or "/usr/sbin/named"
        assert Path(named).exists(), "named is installed by `make system-deps` (bind9)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        zone = self.zone.rstrip(".")
        self.port = free_port(self.address)
        (self.workdir / "zone.db").write_text(
            f"$ORIGIN {zone}.\n$TTL 5\n"
            f"@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 5\n"
            f"@ IN NS ns1.{zone}.\nns1 IN A {self.address}\n"
        )
        (self.workdir / "named.conf").write_text(
            f'options {{ directory "{self.workdir}"; pid-file "{self.workdir}/named.pid";\n'
            f"  listen-on port {self.port} {{ {self.address}; }}; listen-on-v6 {{ none; }};\n"
            "  recursion no; dnssec-validation no; notify no; };\n"
            f'key "{self.key_name}" {{ algorithm hmac-sha256; secret "{self.secret}"; }};\n'
            f'zone "{zone}" {{ type primary; file "{self.workdir}/zone.db";\n'
            f'  allow-update {{ key "{self.key_name}"; }}; }};\n'
            f'controls {{ }};\n'
        )  # fmt: skip
        # the child holds its own copy of the descriptor: ours is closed at once
        with open(self.workdir / "named.log", "ab") as log:
            self.proc = subprocess.Popen(
                [named, "-g", "-c", str(self.workdir / "named.conf")], stdout=log, stderr=log
            )
        wait_for(
            lambda: "SOA" in dig(self.port, zone, "SOA", "+noall", "+answer", server=self.address),
            30,
            0.1,
        )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
