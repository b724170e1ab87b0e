"""No single point of failure in the DNS: an authoritative server at every site, each checking
every site itself; a real recursive resolver (unbound) in front of them, and unmodified clients
behind it, while a site is killed, frozen (SIGSTOP) and cut off from the network; and several
balancers driving one real BIND 9 primary with RFC 2136 updates.

Network namespaces are named `esgfdns-*`; addresses are 127.0.14.x or inside those namespaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest

from esgf_ha.common.auth import issue_token
from esgf_ha.federation.config import load_config
from esgf_ha.federation.plan import master_state, master_url
from esgf_ha.federation.runner import federation_supervisor
from esgf_ha.federation.supervisor import Supervisor
from tests.balancer import Balancer, Bind, answers, dig, wait_for, write_config
from tests.netns import LINK_NET, WORLD_NET, World, inside, world
from tests.servers import IndexServer, free_port

REPO = Path(__file__).resolve().parent.parent
PYESGF = REPO / ".venv-clients" / "pyesgf" / "bin" / "python"
ZONE = "esgf.test"
SEARCH, DATA = f"search.{ZONE}", f"data.{ZONE}"
INDEX_PORT, DATA_PORT, DNS_HTTP_PORT = 8080, 8081, 8053
MASTER = f"{WORLD_NET}.1"
SITES = {"site-a": f"{WORLD_NET}.2", "site-b": f"{WORLD_NET}.3", "site-c": f"{LINK_NET}.3"}
SERVERS = {f"ns-{s.removeprefix('site-')}": a for s, a in SITES.items()}
TARGET_SECONDS = 3.0
FREEZE_SECONDS = 20.0


def _esgf_ha(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esgf_ha", *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _ask(server: str, name: str, port: int = 53, timeout: float = 0.3) -> set[str] | None:
    """The A records one of our servers answers for a name now; None when it does not answer."""
    try:
        response = dns.query.udp(dns.message.make_query(name, "A"), server, port=port,
                                 timeout=timeout)  # fmt: skip
    except (OSError, dns.exception.DNSException):
        return None
    return {str(rr) for rrset in response.answer for rr in rrset}


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def _answered_by(servers: list[str], address: str, present: bool) -> Callable[[], bool]:
    """Every one of `servers` answers both names with (or without) `address`."""

    def check() -> bool:
        for server in servers:
            for name in (SEARCH, DATA):
                got = _ask(SERVERS[server], name)
                if got is None or (address in got) != present:
                    return False
        return True

    return check


# -- the world: a federation with a DNS server per site, unbound, clients ---------------------
def _unbound(tmp: Path, w: World) -> subprocess.Popen[bytes]:
    unbound = shutil.which("unbound") or "/usr/sbin/unbound"
    assert Path(unbound).exists(), "unbound is installed by `make system-deps` (Debian unbound)"
    stubs = "".join(f"  stub-addr: {address}@53\n" for address in SERVERS.values())
    conf = tmp / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"  interface: {w.resolver}\n  port: 53\n  do-ip6: no\n"
        "  access-control: 10.214.0.0/16 allow\n"
        f'  username: ""\n  chroot: ""\n  directory: "{tmp}"\n  pidfile: "{tmp}/unbound.pid"\n'
        '  use-syslog: no\n  logfile: ""\n  verbosity: 1\n  num-threads: 1\n  log-servfail: yes\n'
        '  module-config: "iterator"\n  qname-minimisation: no\n'
        # the test world has no Internet: only our zone is resolved, the rest is refused
        '  local-zone: "." refuse\n'
        f'  local-zone: "{ZONE}." transparent\n'
        # a server that stopped answering is retried within a second of coming back, not
        # after unbound's 120 s backoff: the three losses here follow each other within 40 s
        "  infra-keep-probing: yes\n  infra-cache-max-rtt: 1000\n  infra-host-ttl: 30\n"
        "remote-control:\n  control-enable: no\n"
        f'stub-zone:\n  name: "{ZONE}."\n{stubs}'
    )  # fmt: skip
    # the child holds its own copy of the descriptor: ours is closed at once
    with open(tmp / "unbound.log", "ab") as log:
        proc = subprocess.Popen(w.exec(unbound, "-d", "-c", str(conf)), stdout=log, stderr=log)
    return proc


@dataclass
class Federation:
    w: World
    supervisor: Supervisor
    files: list[tuple[str, int]]  # download path, size
    hits: int

    def pids(self, site: str) -> list[int]:
        server = f"ns-{site.removeprefix('site-')}"
        names = [f"{site}/index", f"{site}/data", f"dns/{server}"]
        return [c.proc.pid for c in self.supervisor.children
                if c.spec.name in names and c.proc is not None]  # fmt: skip


def _config(tmp: Path, data: Path) -> Path:
    return write_config(tmp / "federation.yaml", {
        "name": "dns-ha", "state_dir": str(tmp / "state"),
        "master": {"address": MASTER, "port": 8000},
        "sites": [{"name": name, "address": address, "index_port": INDEX_PORT,
                   "data_port": DATA_PORT, "data_roots": {"esg_dataroot": str(data)}}
                  for name, address in SITES.items()],
        "dns": {"zone": ZONE, "port": 53, "http_port": DNS_HTTP_PORT, "ttl": 1,
                "max_records": len(SITES),
                "servers": [{"name": n, "address": a} for n, a in SERVERS.items()]},
        "health": {"interval": 0.25, "timeout": 0.5, "failures": 2, "recoveries": 1},
    })  # fmt: skip


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    """Three sites (index, data node, DNS server each; every site serves the same files),
    site-c in its own namespace behind a veth; unbound as the users' resolver."""
    data = tmp_path / "data"
    assert _esgf_ha("sample-data", str(data), "--datasets", "2", "--seed", "14").returncode == 0
    with world([MASTER, SITES["site-a"], SITES["site-b"], f"{WORLD_NET}.53"]) as w, inside(w.world):
        config_path = _config(tmp_path, data)
        config = load_config(config_path)
        supervisor = federation_supervisor(config, config_path)
        for child in supervisor.children:  # site-c's processes run in the cut-off namespace
            if child.spec.name.startswith(("site-c/", "dns/ns-c")):
                child.spec = dataclasses.replace(child.spec, argv=w.exec_cut(*child.spec.argv))
        resolver = _unbound(tmp_path, w)
        try:
            supervisor.start_all(timeout=120)
            for address in SERVERS.values():
                _until(lambda a=address: _status(a) is not None, 60, f"DNS server {address}")
            token = issue_token(master_state(config), ["esgf:publish"], subject="test")
            node = f"{SITES['site-a']}:{DATA_PORT}"
            published = _esgf_ha("publish", "--index", master_url(config), "--token", token,
                                 "--data-node", node, "--url-base", f"http://{node}",
                                 "--root", f"esg_dataroot={data}",
                                 "--json", "--no-progress", str(data))  # fmt: skip
            assert published.returncode == 0, published.stderr[-2000:]
            files = [(f"/thredds/fileServer/esg_dataroot/{p.relative_to(data)}", p.stat().st_size)
                     for p in sorted(data.rglob("*.nc"))]  # fmt: skip
            search = "/esg-search/search?project=CMIP6&latest=true&limit=0&format=application%2Fsolr%2Bjson"
            hits = {}
            for site in config.sites:
                _until(lambda s=site: _hits(s.index_url + search) > 0, 60, f"{site.name} index")
                hits[site.name] = _hits(site.index_url + search)
            assert len(set(hits.values())) == 1, hits
            yield Federation(w, supervisor, files, hits["site-a"])
        finally:
            for pid in [c.proc.pid for c in supervisor.children if c.proc is not None]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            supervisor.stop_all()
            resolver.terminate()
            resolver.wait(10)


def _hits(url: str) -> int:
    try:
        return int(httpx.get(url, timeout=2).json()["response"]["numFound"])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0


def _status(address: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"http://{address}:{DNS_HTTP_PORT}/readyz", timeout=1)
    except httpx.HTTPError:
        return None
    return dict(r.json()) if r.status_code == 200 else None


# -- users: clients running through the resolver ---------------------------------------------
@dataclass
class Tally:
    requests: int = 0
    failed: int = 0
    retried: int = 0  # requests that needed another attempt (another address)
    # requests a killed server had already accepted: reset with it, nothing a client without
    # retries can ride through (only a client's one request in flight at that instant)
    reset_by_kill: int = 0
    slowest: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, ok: bool, attempts: int, seconds: float, error: str = "", at: float = 0) -> None:
        self.requests += 1
        self.failed += not ok
        self.retried += attempts > 1
        self.slowest = max(self.slowest, seconds)
        if not ok:
            self.errors.append(f"at {at:.1f}, for {seconds:.1f} s: {error[-400:]}")

    def as_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed, "retried": self.retried,
                "reset_by_kill": self.reset_by_kill, "slowest_s": round(self.slowest, 2),
                "errors": self.errors[:5]}  # fmt: skip


class Users:
    """wget downloading by name (its own retries, resolving again each time), curl searching
    by name (a new curl, so a new resolution, for each attempt), and esgf-pyclient searching by
    name: each in a loop, through the world's resolv.conf, i.e. through unbound."""

    def __init__(self, fed: Federation, tmp: Path) -> None:
        self.fed, self.tmp = fed, tmp
        self.stop = threading.Event()
        self.tallies = {"wget": Tally(), "curl": Tally(), "pyesgf": Tally()}
        self.threads = [threading.Thread(target=self._wget, daemon=True),
                        threading.Thread(target=self._curl, daemon=True)]  # fmt: skip
        self.stop_file = tmp / "pyesgf.stop"
        self.pyesgf: subprocess.Popen[str] | None = None

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        assert PYESGF.exists(), "built by `make clients-setup`"
        self.pyesgf = subprocess.Popen(
            self.fed.w.exec(str(PYESGF), str(REPO / "tests/clients/pyesgf_search_loop.py"),
                            f"http://{SEARCH}:{INDEX_PORT}/esg-search", str(self.stop_file),
                            "--timeout", "30"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def _wget(self) -> None:
        i = 0
        while not self.stop.is_set():
            path, size = self.fed.files[i % len(self.fed.files)]
            i += 1
            began, at = time.monotonic(), time.time()
            # --timeout also bounds name resolution, which wget never retries: while a
            # server of the zone is dead a resolver may take one of its own timeouts (1 s
            # here) and more on a busy machine, so resolution gets wget's default (none)
            run = subprocess.run(self.fed.w.exec(
                "wget", "-O", "-", "--no-verbose", "--timeout=2", "--dns-timeout=0", "--tries=6",
                "--waitretry=0", "--retry-connrefused", "--no-dns-cache",
                f"http://{DATA}:{DATA_PORT}{path}"),
                capture_output=True, timeout=120)  # fmt: skip
            ok = run.returncode == 0 and len(run.stdout) == size
            attempts = 1 + run.stderr.count(b"Retrying")
            self.tallies["wget"].add(ok, attempts, time.monotonic() - began,
                                     run.stderr.decode(errors="replace"), at)  # fmt: skip

    def _curl(self) -> None:
        url = (f"http://{SEARCH}:{INDEX_PORT}/esg-search/search?project=CMIP6&latest=true"
               "&limit=0&format=application%2Fsolr%2Bjson")  # fmt: skip
        while not self.stop.is_set():
            began, at = time.monotonic(), time.time()
            error = ""
            for attempt in range(1, 6):  # noqa: B007 - read after the loop
                run = subprocess.run(self.fed.w.exec(
                    "curl", "-sS", "--fail", "--connect-timeout", "2", "--max-time", "3", url),
                    capture_output=True, text=True, timeout=60)  # fmt: skip
                try:
                    ok = json.loads(run.stdout)["response"]["numFound"] == self.fed.hits
                except (ValueError, KeyError):
                    ok = False
                if ok:
                    break
                error = run.stderr
            self.tallies["curl"].add(ok, attempt, time.monotonic() - began, error, at)
            time.sleep(0.05)

    def finish(self, kill: tuple[float, float]) -> dict[str, Any]:
        """The tallies; `kill` is when the kill of a site began and ended (epoch seconds)."""
        self.stop.set()
        self.stop_file.touch()
        for thread in self.threads:
            thread.join(120)
        assert self.pyesgf is not None
        out, _ = self.pyesgf.communicate(timeout=120)
        for line in out.splitlines():
            record = json.loads(line)
            ok = record.get("hits") == self.fed.hits
            error = f"{record.get('error', '')} (resolves now: {record.get('resolves_now')})"
            began, took = float(record["t"]), float(record["s"])
            if not ok and began <= kill[1] and began + took >= kill[0] and "reset" in error:
                self.tallies["pyesgf"].reset_by_kill += 1
                continue
            self.tallies["pyesgf"].add(ok, 1, took, error, began)
        return {name: t.as_json() for name, t in self.tallies.items()}


@pytest.mark.slow
@pytest.mark.clients
@pytest.mark.timeout(600)
def test_resolver_and_clients_ride_through_a_killed_a_frozen_and_a_cut_off_site(
    tmp_path: Path, federation: Federation
) -> None:
    fed, sup = federation, federation.supervisor
    everyone = list(SERVERS)
    # the resolver's view of the zone: every server in the NS set, each with glue
    with inside(fed.w.world):
        ns = dig(53, ZONE, "NS", "+noall", "+answer", "+additional", server=fed.w.resolver)
        for name, address in SERVERS.items():
            assert f"{name}.{ZONE}." in ns and address in ns, ns
        soas = {dig(53, ZONE, "SOA", "+short", server=a).split()[2] for a in SERVERS.values()}
        assert len(soas) == 1, soas  # one serial, whichever server answers
        _until(lambda: all(_answered_by(everyone, a, True)() for a in SITES.values()), 30,
               "every server answering every site")  # fmt: skip
        users = Users(fed, tmp_path)
        users.start()
        time.sleep(2.0)
        figures: dict[str, dict[str, float]] = {}
        events: dict[str, float] = {}

        # 1. site-a killed: index, data node and DNS server
        victim = SITES["site-a"]
        services = ["site-a/index", "site-a/data", "dns/ns-a"]
        lost = time.monotonic()
        events["kill"] = time.time()
        for name in services:
            sup.kill(name)
        events["killed"] = time.time()
        gone = _until(_answered_by(["ns-b", "ns-c"], victim, False), 30, "site-a dropped")
        time.sleep(2.0)
        for name in services:
            sup.release(name)
        _until(lambda: all(_ok(c.spec.health_url) for c in sup.children
                           if c.spec.name in services[:2]), 60, "site-a up")  # fmt: skip
        ready = time.monotonic()
        back = _until(_answered_by(everyone, victim, True), 30, "site-a answered again")
        figures["killed"] = {"dropped_after_s": round(gone, 2), "answered_again_s": round(back, 2),
                             "lost_for_s": round(ready - lost, 2)}  # fmt: skip

        # 2. site-b frozen for 20 s: the kernel accepts its connections, nobody answers
        victim = SITES["site-b"]
        pids = fed.pids("site-b")
        assert len(pids) == 3
        lost = time.monotonic()
        events["stop"] = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        gone = _until(_answered_by(["ns-a", "ns-c"], victim, False), 30, "frozen site-b dropped")
        time.sleep(max(0.0, FREEZE_SECONDS - (time.monotonic() - lost)))
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        thawed = time.monotonic()
        back = _until(_answered_by(everyone, victim, True), 30, "site-b answered again")
        figures["frozen"] = {"dropped_after_s": round(gone, 2), "answered_again_s": round(back, 2),
                             "lost_for_s": round(thawed - lost, 2)}  # fmt: skip

        # 3. site-c cut off: its end of the veth down, packets to it dropped
        victim = SITES["site-c"]
        lost = time.monotonic()
        events["cut"] = time.time()
        fed.w.link(up=False)
        gone = _until(_answered_by(["ns-a", "ns-b"], victim, False), 30, "cut-off site-c dropped")
        time.sleep(3.0)
        fed.w.link(up=True)
        restored = time.monotonic()
        back = _until(_answered_by(everyone, victim, True), 30, "site-c answered again")
        figures["cut_off"] = {"dropped_after_s": round(gone, 2), "answered_again_s": round(back, 2),
                              "lost_for_s": round(restored - lost, 2)}  # fmt: skip
        time.sleep(2.0)
        clients = users.finish((events["kill"], events["killed"]))

    report = {"figures": figures, "clients": clients, "events": events}
    print("\nDNS-HA " + json.dumps(report))
    (tmp_path / "dns-ha.json").write_text(json.dumps(report, indent=2))
    for case, f in figures.items():
        assert f["dropped_after_s"] < TARGET_SECONDS, (case, report)
        assert f["answered_again_s"] < TARGET_SECONDS, (case, report)
    # clients that retry another address: not one request lost
    for name in ("wget", "curl", "pyesgf"):
        assert clients[name]["requests"] >= 5, (name, report)
    assert clients["wget"]["failed"] == 0, report
    assert clients["curl"]["failed"] == 0, report
    assert clients["pyesgf"]["failed"] == 0, report
    assert clients["pyesgf"]["reset_by_kill"] <= 1, report  # one search at a time


def _ok(url: str | None) -> bool:
    try:
        return url is not None and httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# -- the config: several servers, and the older one-server form ------------------------------
def test_config_names_several_servers_and_keeps_the_one_server_form(tmp_path: Path) -> None:
    from esgf_ha.federation.config import ConfigError, parse_config

    site = [{"name": "a", "address": "127.0.14.2"}]
    old = parse_config({"sites": site, "dns": {"zone": ZONE, "address": "127.0.14.9",
                                               "port": 5353, "http_port": 8054}})  # fmt: skip
    (only,) = old.dns.name_servers()
    assert (only.ns_fqdn, only.address, only.port, only.http_port) == (
        "ns1.esgf.test.", "127.0.14.9", 5353, 8054)  # fmt: skip
    assert old.dns.name_server(None) == only
    new = parse_config({"sites": site, "dns": {"zone": ZONE, "port": 5353, "servers": [
        {"name": "ns-a", "address": "127.0.14.10"},
        {"name": "ns.other.example.", "address": "127.0.14.11", "port": 53, "http_port": 9}]}})  # fmt: skip
    a, other = new.dns.name_servers()
    assert (a.ns_fqdn, a.port, other.ns_fqdn, other.port, other.http_port) == (
        "ns-a.esgf.test.", 5353, "ns.other.example.", 53, 9)  # fmt: skip
    assert new.dns.name_server("ns-a.esgf.test.") == a
    with pytest.raises(ConfigError, match=r"--server ns-a \| ns\.other\.example\."):
        new.dns.name_server(None)
    for servers, message in (
        ([{"name": "x", "address": "127.0.14.10"}, {"name": "x", "address": "127.0.14.11"}],
         "dns: DNS server names must be distinct"),
        ([{"name": "x", "address": "127.0.14.10"}, {"name": "y", "address": "127.0.14.10"}],
         "dns: two DNS servers share an address and port"),
        ([{"name": "x", "address": "ns.example."}], r"dns\.servers\[0\]\.address: .ns\.example\.. is not an IP"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            parse_config({"sites": site, "dns": {"port": 53, "servers": servers}})
    path = write_config(tmp_path / "f.yaml", {"sites": site, "dns": {"servers": [
        {"name": "ns-a", "address": "127.0.14.10"}, {"name": "ns-b", "address": "127.0.14.11"}]}})  # fmt: skip
    # `up` runs one process per server, each told which one it is, each with its own state
    from esgf_ha.federation.plan import plan

    tokens = {"replica": tmp_path / "t.jwt", "replicator": tmp_path / "t.jwt"}
    dns_specs = [p for p in plan(load_config(path), path, tokens) if p.name.startswith("dns")]
    assert [(p.name, p.argv[-2:], p.state_dir.name) for p in dns_specs] == [
        ("dns/ns-a", ["--server", "ns-a"], "ns-a"), ("dns/ns-b", ["--server", "ns-b"], "ns-b")]  # fmt: skip
    legacy = write_config(tmp_path / "old.yaml", {"sites": site, "state_dir": "s"})
    (one,) = [p for p in plan(load_config(legacy), legacy, tokens) if p.name.startswith("dns")]
    assert one.name == "dns" and "--server" not in one.argv and one.state_dir.name == "dns"
    run = _esgf_ha("serve", "dns", "-c", str(path), timeout=60)
    assert run.returncode == 2 and "--server ns-a | ns-b" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


# -- several servers on loopback: the zone, the status, the rate limit ------------------------
LOOP = "127.0.14"


def _index_sites(tmp: Path, addresses: list[str]) -> list[IndexServer]:
    return [IndexServer(tmp / f"site{i}", listen=f"{a}:{free_port(a)}").start()
            for i, a in enumerate(addresses)]  # fmt: skip


def _sites_config(sites: list[IndexServer]) -> list[dict[str, Any]]:
    return [{"name": f"site{i}", "address": s.listen.rsplit(":", 1)[0],
             "index_port": int(s.listen.rsplit(":", 1)[1]), "data_port": None}
            for i, s in enumerate(sites)]  # fmt: skip


@pytest.fixture
def loop_sites(tmp_path: Path) -> Iterator[list[IndexServer]]:
    sites = _index_sites(tmp_path, [f"{LOOP}.2", f"{LOOP}.3"])
    yield sites
    for site in sites:
        if site.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(site.proc.pid, signal.SIGCONT)
        site.stop()


def test_every_server_answers_the_zone_and_status_shows_each_view(
    tmp_path: Path, loop_sites: list[IndexServer]
) -> None:
    servers = [{"name": "ns-a", "address": f"{LOOP}.10"},
               {"name": "ns-b", "address": f"{LOOP}.11"},
               {"name": "ns.other.example.", "address": f"{LOOP}.12"}]  # fmt: skip
    base = {
        "state_dir": str(tmp_path / "state"), "sites": _sites_config(loop_sites),
        "dns": {"zone": ZONE, "port": 0, "ttl": 1, "max_records": 2, "servers": servers,
                "rate_limit": 20, "rate_burst": 10},
        "health": {"interval": 0.25, "timeout": 0.5, "failures": 2, "recoveries": 1},
    }  # fmt: skip
    config = write_config(tmp_path / "federation.yaml", base)
    # ns-b's own view lags on recoveries: the two servers will disagree for a while
    slow = write_config(tmp_path / "slow.yaml", {**base, "health": {**base["health"],
                                                                    "recoveries": 100}})  # fmt: skip
    state = tmp_path / "state" / "dns"
    a = Balancer(config, state / "ns-a", server="ns-a").start()
    b = Balancer(slow, state / "ns-b", server="ns-b").start()
    try:
        both = {f"{LOOP}.2", f"{LOOP}.3"}
        for server in (a, b):
            ns = dig(server.dns_port, ZONE, "NS", "+noall", "+answer", "+additional",
                     server=server.status()["dns"]["address"])  # fmt: skip
            for name in ("ns-a.esgf.test.", "ns-b.esgf.test.", "ns.other.example."):
                assert name in ns, ns
            # glue for the servers named inside the zone; the other zone's server has none here
            assert f"{LOOP}.10" in ns and f"{LOOP}.11" in ns and f"{LOOP}.12" not in ns, ns
            wait_for(lambda s=server: _ask(s.status()["dns"]["address"], SEARCH,
                                           s.dns_port) == both, 10)  # fmt: skip
        assert a.status()["serial"] == b.status()["serial"]
        # a restarted server gives the same serial (derived from the zone, not the process)
        serial = a.status()["serial"]
        a.stop()
        a.start()
        assert a.status()["serial"] == serial
        soa = dig(a.dns_port, ZONE, "SOA", "+short", server=f"{LOOP}.10").split()
        assert soa[0] == "ns-a.esgf.test." and int(soa[2]) == serial

        def status() -> dict[str, Any]:
            run = _esgf_ha("status", "-c", str(config), "--json", timeout=60)
            return dict(json.loads(run.stdout))

        assert status()["dns_disagreements"] == ["not answering: ns.other.example."]
        # site1 dies; both servers drop it; it comes back; only ns-a takes it back so soon
        loop_sites[1].kill()
        for server, address in ((a, f"{LOOP}.10"), (b, f"{LOOP}.11")):
            wait_for(lambda s=server, ad=address: _ask(ad, SEARCH, s.dns_port) == {f"{LOOP}.2"},
                     5)  # fmt: skip
        loop_sites[1].start()
        wait_for(lambda: _ask(f"{LOOP}.10", SEARCH, a.dns_port) == both, 5)
        assert _ask(f"{LOOP}.11", SEARCH, b.dns_port) == {f"{LOOP}.2"}
        seen = status()
        assert "site site1: ns-a.esgf.test. in, ns-b.esgf.test. out" in seen["dns_disagreements"], (
            seen
        )
        views = {d["name"]: d["healthy"] for d in seen["dns_servers"]}
        assert views["ns-a.esgf.test."] == {"site0": True, "site1": True}
        assert views["ns-b.esgf.test."] == {"site0": True, "site1": False}
        table = _esgf_ha("status", "-c", str(config), timeout=60).stdout
        assert "DNS servers disagree" in table and "ns-b.esgf.test." in table

        # rate limit: one client over it is dropped or told to use TCP; others are not
        sent, answered, truncated = 60, 0, 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((f"{LOOP}.30", 0))
            udp.settimeout(0.5)
            for i in range(sent):  # all at once: faster than the limit refills
                query = dns.message.make_query(SEARCH, "A", id=i)
                udp.sendto(query.to_wire(), (f"{LOOP}.10", a.dns_port))
            with contextlib.suppress(TimeoutError):
                while True:
                    r = dns.message.from_wire(udp.recv(4096))
                    answered += 1
                    truncated += bool(r.flags & dns.flags.TC)
        assert answered - truncated <= 10 + 2, (answered, truncated)  # the burst, and a refill
        assert truncated >= 10, (answered, truncated)
        assert _ask(f"{LOOP}.10", SEARCH, a.dns_port) == both  # another client: answered
        tcp = dns.query.tcp(dns.message.make_query(SEARCH, "A"), f"{LOOP}.10", port=a.dns_port,
                            timeout=2, source=f"{LOOP}.30")  # fmt: skip
        assert {str(rr) for rrset in tcp.answer for rr in rrset} == both
        assert a.status()["rate_limited"] >= sent - answered + truncated
        assert "esgf_ha_dns_rate_limited" in httpx.get(a.url + "/metrics").text
    finally:
        a.stop()
        b.stop()


class DripServer:
    """An HTTP server that answers `/readyz` with 200, until told to drip: then it sends the
    status line and one byte of a header every 0.2 s, forever (a per-read timeout never fires)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.drip = threading.Event()
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(4096)
            if not self.drip.is_set():
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                             b"\r\n{}")  # fmt: skip
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while not self.closed.is_set():
                conn.sendall(b"a")
                time.sleep(0.2)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def test_hung_and_dripping_sites_leave_the_answers_as_fast_as_dead_ones(
    tmp_path: Path, loop_sites: list[IndexServer]
) -> None:
    drip = DripServer(f"{LOOP}.4")
    sites = _sites_config(loop_sites) + [
        {"name": "drip", "address": f"{LOOP}.4", "index_port": drip.port, "data_port": None}
    ]
    config = write_config(tmp_path / "federation.yaml", {
        "state_dir": str(tmp_path / "state"), "sites": sites,
        "dns": {"zone": ZONE, "address": f"{LOOP}.10", "port": 0, "ttl": 1, "max_records": 3},
        "health": {"interval": 0.25, "timeout": 0.5, "failures": 2, "recoveries": 1},
    })  # fmt: skip
    balancer = Balancer(config, tmp_path / "dns").start()
    try:
        every = {f"{LOOP}.2", f"{LOOP}.3", f"{LOOP}.4"}
        wait_for(lambda: _ask(f"{LOOP}.10", SEARCH, balancer.dns_port) == every, 10)
        frozen = loop_sites[1].proc
        assert frozen is not None
        began = time.monotonic()
        os.kill(frozen.pid, signal.SIGSTOP)  # the kernel still accepts its connections
        drip.drip.set()
        took = wait_for(lambda: _ask(f"{LOOP}.10", SEARCH, balancer.dns_port) == {f"{LOOP}.2"},
                        10)  # fmt: skip
        assert took < TARGET_SECONDS, took
        reasons = {s["site"]: s["reason"] for s in balancer.status()["sites"]}
        assert reasons["site1"].startswith("no answer within") or "Timeout" in reasons["site1"]
        assert reasons["drip"] == "no answer within 0.5 s", reasons
        os.kill(frozen.pid, signal.SIGCONT)
        drip.drip.clear()
        thawed = time.monotonic()
        wait_for(lambda: _ask(f"{LOOP}.10", SEARCH, balancer.dns_port) == every, 10)
        assert time.monotonic() - thawed < TARGET_SECONDS
        assert time.monotonic() - began < 10
    finally:
        balancer.stop()
        drip.close()


# -- several balancers driving one BIND 9 primary ---------------------------------------------
def test_two_balancers_drive_one_bind_without_flapping(tmp_path: Path) -> None:
    sites = _index_sites(tmp_path, [f"{LOOP}.20", f"{LOOP}.21", f"{LOOP}.22"])
    # named listens only on interface addresses: 127.0.0.1, on a free port, as in test_dns.py
    bind = Bind(tmp_path / "bind", ZONE).start()
    rfc = {"server": bind.address, "port": bind.port, "tsig_key_name": bind.key_name,
           "tsig_secret": bind.secret}  # fmt: skip
    base = {
        "state_dir": str(tmp_path / "state"), "sites": _sites_config(sites),
        "dns": {"zone": ZONE, "address": f"{LOOP}.40", "port": 0, "ttl": 1, "mode": "rfc2136",
                "rfc2136": rfc},
        "health": {"interval": 0.25, "timeout": 0.5, "failures": 2, "recoveries": 1},
    }  # fmt: skip
    config_a = write_config(tmp_path / "a.yaml", base)
    # b sees recoveries late (its own view): a slower checker must not undo a faster one
    slow = {**base, "dns": {**base["dns"], "address": f"{LOOP}.41"},
            "health": {**base["health"], "recoveries": 100}}  # fmt: skip
    config_b = write_config(tmp_path / "b.yaml", slow)
    a = Balancer(config_a, tmp_path / "dns-a").start()
    b = Balancer(config_b, tmp_path / "dns-b").start()
    seen: list[tuple[float, set[str]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append((time.monotonic(), answers(bind.port, SEARCH, server=bind.address)))
            time.sleep(0.03)

    watcher = threading.Thread(target=watch, daemon=True)
    s0, s1, s2 = (f"{LOOP}.2{i}" for i in range(3))

    def records() -> set[str]:
        return answers(bind.port, SEARCH, server=bind.address)

    try:
        wait_for(lambda: records() == {s0, s1, s2}, 10)
        watcher.start()
        sites[0].kill()
        assert wait_for(lambda: records() == {s1, s2}, 10) < TARGET_SECONDS
        sites[0].start()
        back = time.monotonic()
        assert wait_for(lambda: records() == {s0, s1, s2}, 10) < TARGET_SECONDS  # a put it back
        back_at = time.monotonic()
        # s2 dies: both balancers update; b still sees s0 down, and must not take it out
        sites[2].kill()
        wait_for(lambda: records() == {s0, s1}, 10)
        time.sleep(1.5)
        b_view = {s["site"]: s["healthy"] for s in b.status()["sites"]}
        assert b_view == {"site0": False, "site1": False, "site2": False} or not b_view["site0"]
        # b dies: a alone keeps the records right
        b.proc.kill()  # type: ignore[union-attr]
        b.proc.wait()  # type: ignore[union-attr]
        sites[2].start()
        wait_for(lambda: records() == {s0, s1, s2}, 10)
        sites[1].kill()
        wait_for(lambda: records() == {s0, s2}, 10)
        stop.set()
        watcher.join(10)
        # never empty; s1 (healthy until killed at the end) and s0 (once back) never flapped out
        assert all(got for _, got in seen)
        lost_s1 = [t for t, got in seen if s1 not in got]
        assert not lost_s1 or min(lost_s1) > back_at + 2, "healthy site1 flapped"
        flaps = [t for t, got in seen if back_at <= t and s0 not in got]
        assert not flaps, f"site0 left the records {len(flaps)} times after it was back"
        assert back < back_at
        assert a.status()["rfc2136"]["failures"] == 0
    finally:
        stop.set()
        a.stop()
        b.stop()
        bind.stop()
        for site in sites:
            site.stop()
