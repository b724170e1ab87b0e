"""Find processes a test run started and left behind.

Every process the run starts inherits one environment variable naming the run, so its
descendants can be found in /proc whatever they are (our services, real clients, BIND, nginx,
processes inside network namespaces) without confusing them with another run's on the same
machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

RUN_VARIABLE = "ESGF_HA_TEST_RUN"


def tag_this_run() -> str:
    """Mark this process's environment so every child inherits the run's tag."""
    return os.environ.setdefault(RUN_VARIABLE, f"{os.getpid()}-{uuid.uuid4().hex}")


def processes_of_run(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes carrying `tag`, this process excluded."""
    wanted = f"{RUN_VARIABLE}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            # a zombie's environ reads empty, so processes already dead but not reaped never match
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if _SELF_HELPER in command and _parent(entry) == os.getpid():
            continue
        found.append((int(entry.name), command.strip()))
    return found


# multiprocessing's resource tracker: started by the test process itself the first time a test
# uses a process pool in-process, it lives until that process exits, so it is not a leftover
_SELF_HELPER = "multiprocessing.resource_tracker"


def _parent(entry: Path) -> int:
    # the fourth field of /proc/PID/stat, after the command name in parentheses
    return int((entry / "stat").read_text().rpartition(")")[2].split()[1])


def reap_leftovers(tag: str, grace: float = 10.0) -> list[tuple[int, str]]:
    """Processes still alive after `grace` seconds (they may be shutting down); those are killed
    and returned, so the run can fail naming them."""
    deadline = time.monotonic() + grace
    while (left := processes_of_run(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left
