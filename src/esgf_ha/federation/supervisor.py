"""Run a set of services as supervised child processes: start them in order, restart any that
dies (with backoff, so a service that cannot start does not spin), stop them all cleanly.

Children run in their own process group, so a Ctrl-C reaches only the supervisor, which then
stops them in reverse order: the DNS first, the master last.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from esgf_ha.common.index_client import IndexClient, IndexClientError, Verify
from esgf_ha.common.retry import Backoff
from esgf_ha.federation.plan import ProcessSpec

log = logging.getLogger("esgf_ha.supervisor")
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STABLE_SECONDS = 60.0  # a child that ran this long restarts without backoff
STOP_GRACE_SECONDS = 10.0


@dataclass
class Child:
    spec: ProcessSpec
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    next_start: float = 0.0
    last_exit: int | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept for the child's life
        self.proc = subprocess.Popen(
            self.spec.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.spec.env},
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        log.info("started", extra={"service": self.spec.name, "pid": self.proc.pid})

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Supervisor:
    def __init__(
        self,
        specs: list[ProcessSpec],
        log_dir: Path,
        on_event: Callable[[str, str], None] | None = None,
        verify: Verify = True,
    ) -> None:
        self.children = [Child(s, log_dir / (s.name.replace("/", "-") + ".log")) for s in specs]
        self.on_event = on_event or (lambda name, what: None)
        self.stopping = threading.Event()
        self.held: set[str] = set()  # not restarted while held (an operator took them down)
        # health checks verify HTTPS like every other client of the federation
        self.verify = verify
        self._probes: dict[str, IndexClient] = {}

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.spec.name == name)

    def _healthy(self, child: Child) -> bool:
        if not child.running:
            return False
        if child.spec.health_url is None:
            return True
        url = httpx.URL(child.spec.health_url)
        origin = f"{url.scheme}://{url.netloc.decode()}"
        if origin not in self._probes:
            once = Backoff(retries=0)  # the next check is the retry
            self._probes[origin] = IndexClient(origin, verify=self.verify, timeout=1.0, retry=once)
        try:
            return self._probes[origin].readiness(url.path)[0] == 200
        except IndexClientError:
            return False

    def start_all(self, timeout: float = 120.0) -> None:
        """Start in order, each once the services it comes after answer `/livez`."""
        for child in self.children:
            for name in child.spec.after:
                dep = self.child(name)
                deadline = time.monotonic() + timeout
                while not self._healthy(dep):
                    if self.stopping.is_set():
                        return
                    if not dep.running:
                        raise RuntimeError(
                            f"{name} exited with status {dep.proc.returncode if dep.proc else '?'}"
                            f" before it was up; see {dep.log_path}"
                        )
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not come up in {timeout:.0f} s")
                    time.sleep(0.1)
            child.start()
            self.on_event(child.spec.name, "started")

    def watch_once(self) -> None:
        """Restart children that exited (called in a loop by `run`)."""
        now = time.monotonic()
        for child in self.children:
            if (
                child.proc is None
                or child.running
                or self.stopping.is_set()
                or child.spec.name in self.held
            ):
                continue
            if child.next_start == 0.0:
                child.last_exit = child.proc.returncode
                ran = now - child.started_at
                child.backoff = BACKOFF_FIRST if ran > STABLE_SECONDS else child.backoff
                child.next_start = now + child.backoff
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
                log.warning(
                    "exited; restarting",
                    extra={"service": child.spec.name, "status": child.last_exit,
                           "in_seconds": round(child.next_start - now, 1)},
                )  # fmt: skip
                self.on_event(child.spec.name, f"exited with status {child.last_exit}")
            elif now >= child.next_start:
                child.next_start = 0.0
                child.restarts += 1
                child.start()
                self.on_event(child.spec.name, "restarted")

    def kill(self, name: str) -> None:
        """SIGKILL a service and keep it down until `release` (failover drills)."""
        child = self.child(name)
        self.held.add(name)
        if child.proc is not None and child.running:
            child.proc.kill()
            child.proc.wait()
        self.on_event(name, "killed")

    def release(self, name: str) -> None:
        self.held.discard(name)
        child = self.child(name)
        if not child.running:
            child.next_start = 0.0
            child.start()
            self.on_event(name, "started")

    def run(self, poll: float = 0.2) -> None:
        while not self.stopping.wait(poll):
            self.watch_once()

    def stop_all(self) -> None:
        self.stopping.set()
        for child in reversed(self.children):
            child.stop()
            self.on_event(child.spec.name, "stopped")
        for probe in self._probes.values():
            probe.close()
        self._probes.clear()
