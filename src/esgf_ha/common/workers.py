"""Several worker processes serving one port.

The caller holds the port (bound with SO_REUSEPORT, not listening) and forks the workers
through this supervisor; each runs its own event loop and its own state and listens on its own
socket bound to the same port, so the kernel spreads new connections evenly over them. The
supervisor starts a new worker when one dies, and on SIGTERM/SIGINT passes the signal on to every worker,
whose own graceful stop (drain, grace, exit 0; see `server.Shutdown`) then runs, and waits for
them all. Forking lets the workers share the parent's memory (the facet index) until they
change it; the parent must therefore hold no thread and no SQLite handle when it forks.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("esgf_ha.server")

PR_SET_PDEATHSIG = 1
# a worker that dies sooner than this after its start is restarted after a growing pause,
# so a worker that cannot start does not fork in a tight loop
QUICK_DEATH = 5.0
MAX_PAUSE = 10.0


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker if the supervisor dies (killed with -9):
    a worker must not outlive it holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _run_child(index: int, run_worker: Callable[[int], None]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()
    code = 0
    try:
        run_worker(index)
    except BaseException:
        log.exception("worker failed", extra={"worker": index})
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


class Supervisor:
    """Keeps `count` workers running `run_worker(index)` until asked to stop."""

    def __init__(self, count: int, run_worker: Callable[[int], None]) -> None:
        self.count = count
        self.run_worker = run_worker
        self.children: dict[int, tuple[int, float]] = {}  # pid: (index, started at)
        self.stopping = False
        self.pauses: dict[int, float] = {}

    def _start(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:
            _run_child(index, self.run_worker)
        self.children[pid] = (index, time.monotonic())
        log.info("worker started", extra={"worker": index, "pid": pid})

    def _on_signal(self, sig: int, frame: Any) -> None:
        self.stopping = True
        # a second signal is passed on too: the workers then skip the rest of their drain
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def run(self) -> None:
        """Start the workers and supervise them; returns once all have stopped after a
        SIGTERM or SIGINT."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.count):
            self._start(index)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index, started = self.children.pop(pid, (-1, 0.0))
            if index < 0 or self.stopping:
                continue
            log.warning(
                "worker died; starting a new one",
                extra={"worker": index, "pid": pid, "status": os.waitstatus_to_exitcode(status)},
            )
            self._restart(index, started)

    def _restart(self, index: int, started: float) -> None:
        pause = 0.0
        if time.monotonic() - started < QUICK_DEATH:
            pause = min(MAX_PAUSE, max(0.2, self.pauses.get(index, 0.0) * 2))
        self.pauses[index] = pause
        deadline = time.monotonic() + pause
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.stopping:
            self._start(index)
