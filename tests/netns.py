"""Network namespaces for the DNS high-availability tests: a "world" namespace where users,
their resolver and most sites live, and a site behind a veth pair whose link a test can cut.

Every name starts with `esgfdns`; every address is inside these namespaces (10.214.14.0/24 on
the veth, 10.214.15.x on the world's loopback), so nothing reaches the machine's own network.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
WORLD_NET = "10.214.15"  # on the world's loopback: master, sites, resolver
LINK_NET = "10.214.14"  # the veth between the world and the cut-off site
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> None:
    tool = shutil.which("ip")
    assert tool, "ip (iproute2) is installed by `make system-deps`"
    run = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, f"ip {' '.join(args)}: {run.stderr}"


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run this thread in a network namespace: its sockets, the threads it starts and the
    processes it forks live there (threads started inside stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(f"/run/netns/{namespace}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "could not return to the test's namespace")
    finally:
        os.close(own)


@dataclass
class World:
    world: str  # namespace of the users, their resolver, the master and sites a and b
    cut: str  # namespace of the site whose link is cut
    resolver: str  # the address the world's resolv.conf names

    def exec(self, *argv: str) -> list[str]:
        """argv run in the world with its resolv.conf (as `ip netns exec` arranges)."""
        return ["ip", "netns", "exec", self.world, *argv]

    def exec_cut(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.cut, *argv]

    def link(self, up: bool) -> None:
        """Cut the cut-off site's link (its end of the veth down: the world's packets to it
        are dropped, nobody refuses them), or restore it."""
        ip("-n", self.cut, "link", "set", "vc", "up" if up else "down")
        if up:
            ip("-n", self.cut, "route", "replace", f"{WORLD_NET}.0/24", "via", f"{LINK_NET}.1")


@contextlib.contextmanager
def world(addresses: list[str]) -> Iterator[World]:
    """Two namespaces joined by a veth pair; `addresses` (in WORLD_NET) on the world's
    loopback. Everything started in them is killed when the block ends."""
    tag = uuid.uuid4().hex[:6]
    w, c = f"esgfdns-{tag}-w", f"esgfdns-{tag}-c"
    conf = Path("/etc/netns") / w
    made: list[str] = []
    try:
        for name in (w, c):
            ip("netns", "add", name)
            made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        for address in addresses:  # the world's own loopback: reachable from the veth too
            ip("-n", w, "addr", "add", f"{address}/32", "dev", "lo")
        ip("-n", w, "link", "add", "vw", "type", "veth", "peer", "name", "vc", "netns", c)
        ip("-n", w, "addr", "add", f"{LINK_NET}.1/24", "dev", "vw")
        ip("-n", w, "link", "set", "vw", "up")
        ip("-n", c, "addr", "add", f"{LINK_NET}.3/24", "dev", "vc")
        ip("-n", c, "link", "set", "vc", "up")
        ip("-n", c, "route", "add", f"{WORLD_NET}.0/24", "via", f"{LINK_NET}.1")
        resolver = f"{WORLD_NET}.53"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "resolv.conf").write_text(f"nameserver {resolver}\noptions timeout:1 attempts:3\n")
        yield World(w, c, resolver)
    finally:
        for name in made:
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGCONT)  # a stopped process dies only when woken
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(conf, ignore_errors=True)
