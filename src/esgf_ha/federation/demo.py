"""`esgf-ha demo`: a three-site federation on this machine, each site on its own loopback
address (127.0.1.2-4) with its own authoritative DNS server, the master on 127.0.1.1. Sample
CMIP6 and CMIP5 data is published at site-a; site-b and site-c replicate it. With `check`, the
scenario verifies that every site answers the same searches and serves the same files, then
kills the whole of site-b (its DNS server too) and measures how the other DNS servers and a
retrying client get through it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from esgf_ha.common.auth import issue_token
from esgf_ha.common.index_client import IndexClient, IndexClientError
from esgf_ha.common.retry import Backoff
from esgf_ha.federation.config import FederationConfig, load_config
from esgf_ha.federation.plan import master_state, master_url
from esgf_ha.federation.resolver import ServiceClient
from esgf_ha.federation.runner import federation_supervisor
from esgf_ha.federation.supervisor import Supervisor

MASTER_ADDRESS = "127.0.1.1"
SITES = {"site-a": "127.0.1.2", "site-b": "127.0.1.3", "site-c": "127.0.1.4"}
NAME_SERVERS = {f"ns-{site.removeprefix('site-')}": address for site, address in SITES.items()}
INDEX_PORT, DATA_PORT, MASTER_PORT, DNS_PORT, DNS_HTTP_PORT = 8080, 8081, 8000, 8053, 8054
ZONE = "esgf.test."
ROOT = "esg_dataroot"
VICTIM = "site-b"
SEARCHES = [
    {"project": "CMIP6", "latest": "true", "facets": "source_id,variable_id", "limit": "0"},
    {"project": "CMIP5", "limit": "0", "facets": "model"},
    {"type": "File", "limit": "0"},
    {"query": "variable_id:tas OR variable:tas", "limit": "0"},
]


class DemoFailed(RuntimeError):
    pass


def write_config(state_dir: Path, dns_port: int = DNS_PORT) -> Path:
    config = {
        "name": "esgf-ha-demo",
        "state_dir": str(state_dir / "state"),
        "master": {"address": MASTER_ADDRESS, "port": MASTER_PORT},
        "sites": [
            {
                "name": name,
                "address": address,
                "index_port": INDEX_PORT,
                "data_port": DATA_PORT,
                "data_roots": {ROOT: str(state_dir / "data" / name)},
                **(
                    {}
                    if name == "site-a"
                    else {"replication": {"query": "project=CMIP6&project=CMIP5"}}
                ),
            }
            for name, address in SITES.items()
        ],  # fmt: skip
        "dns": {
            "zone": ZONE,
            # one server per site, on the site's address: losing a site loses its server only
            "servers": [{"name": n, "address": a} for n, a in NAME_SERVERS.items()],
            "port": dns_port,
            "http_port": DNS_HTTP_PORT,
            "ttl": 2,
            "max_records": len(SITES),  # all healthy sites, shuffled: clients try the next
        },  # fmt: skip
        "health": {"interval": 0.5, "timeout": 0.5, "failures": 2, "recoveries": 1},
    }
    path = state_dir / "federation.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _esgf_ha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esgf_ha", *args], capture_output=True, text=True, timeout=600
    )


ONCE = Backoff(retries=0)


def _wait(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            if predicate():
                return time.monotonic() - began
        except (httpx.HTTPError, IndexClientError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def _readiness(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    """A service's `/readyz`, asked once (the demo's waits are the retries)."""
    with IndexClient(url, timeout=timeout, retry=ONCE) as client:
        return client.readiness()


def _ready(url: str) -> bool:
    return _readiness(url)[0] == 200


def _json(index_url: str, **params: str) -> Any:
    with IndexClient(index_url, timeout=10, retry=ONCE) as client:
        return client.search(params)


@dataclass
class Demo:
    state_dir: Path
    say: Callable[[str], None]
    datasets: int = 6
    dns_port: int = DNS_PORT
    config: FederationConfig = field(init=False)
    supervisor: Supervisor = field(init=False)
    files: list[tuple[str, int, str]] = field(default_factory=list)  # path, size, sha256

    def start(self) -> None:
        config_path = write_config(self.state_dir, self.dns_port)
        self.config = load_config(config_path)
        root_a = self.config.sites[0].data_roots[ROOT]
        if not root_a.exists():
            self.say(f"writing sample netCDF files under {root_a} ...")
            for project, count in (("CMIP6", self.datasets), ("CMIP5", 2)):
                run = _esgf_ha("sample-data", str(root_a), "--project", project,
                               "--datasets", str(count), "--seed", "2026")  # fmt: skip
                if run.returncode != 0:
                    raise DemoFailed(f"sample-data failed: {run.stderr[-1000:]}")
        for site in self.config.sites:
            site.data_roots[ROOT].mkdir(parents=True, exist_ok=True)
        self.say(f"starting the federation ({config_path}) ...")
        self.supervisor = federation_supervisor(self.config, config_path)
        self.supervisor.start_all()
        for address in NAME_SERVERS.values():
            ready = partial(_ready, f"http://{address}:{DNS_HTTP_PORT}")
            _wait(f"the DNS server on {address}", ready, 60)

    def publish(self) -> None:
        site_a = self.config.sites[0]
        token = issue_token(master_state(self.config), ["esgf:publish"], subject="demo")
        node = f"{site_a.address}:{DATA_PORT}"
        run = _esgf_ha(
            "publish", "--index", master_url(self.config), "--token", token,
            "--data-node", node, "--url-base", f"http://{node}",
            "--root", f"{ROOT}={site_a.data_roots[ROOT]}", "--json", "--no-progress",
            str(site_a.data_roots[ROOT]),
        )  # fmt: skip
        if run.returncode != 0:
            raise DemoFailed(f"publishing site-a's data failed: {run.stdout[-800:]} "
                             f"{run.stderr[-800:]}")  # fmt: skip
        # the latest versions are what the other sites replicate
        docs = _json(master_url(self.config), type="File", latest="true",
                     replica="false", limit="10000", fields="url,size,checksum")["response"]["docs"]  # fmt: skip
        for doc in docs:
            path = httpx.URL(str(doc["url"][0]).split("|")[0]).path
            self.files.append((path, int(doc["size"]), str(doc["checksum"][0])))
        datasets = _json(master_url(self.config), replica="false",
                         limit="0")  # fmt: skip
        self.say(f"published {datasets['response']['numFound']} dataset versions from site-a "
                 f"({len(self.files)} files in the latest ones)")  # fmt: skip

    def wait_for_replication(self, timeout: float = 300) -> None:
        master = master_url(self.config)
        originals = _json(master, latest="true", replica="false", limit="0")["response"]["numFound"]

        def replicated(site_address: str) -> bool:
            node = f"{site_address}:{DATA_PORT}"
            found = _json(master, data_node=node, latest="true", limit="0")["response"]["numFound"]
            return bool(found == originals)

        def caught_up(index_url: str, seq: int) -> bool:
            return int(_readiness(index_url)[1]["seq"]) >= seq

        for site in self.config.sites[1:]:
            took = _wait(f"{site.name} to replicate", partial(replicated, site.address), timeout)
            self.say(f"{site.name} replicated and published every dataset ({took:.1f} s)")
        seq = int(_readiness(master_url(self.config))[1]["seq"])
        for site in self.config.sites:
            _wait(f"{site.name}'s index to catch up", partial(caught_up, site.index_url, seq), 60)

    def verify_sites(self) -> list[str]:
        """Every site answers the same searches and serves the same bytes."""
        problems = []
        for params in SEARCHES:
            counts = {
                s.name: _json(s.index_url, **params)["response"]["numFound"]
                for s in self.config.sites
            }
            if len(set(counts.values())) != 1 or not any(counts.values()):
                problems.append(f"search {params}: {counts}")
        with httpx.Client(timeout=30) as client:
            for site in self.config.sites:
                for path, size, checksum in self.files:
                    r = client.get(site.data_url + path) if site.data_url else None
                    if r is None or r.status_code != 200:
                        problems.append(f"{site.name} {path}: {r.status_code if r else '-'}")
                    elif (
                        len(r.content) != size or hashlib.sha256(r.content).hexdigest() != checksum
                    ):
                        problems.append(f"{site.name} {path}: wrong bytes")
        return problems

    def dns_servers(self) -> list[tuple[str, int]]:
        return [(address, self.dns_port) for address in NAME_SERVERS.values()]

    def tour(self) -> str:
        cmip6 = httpx.URL(f"http://search.esgf.test:{INDEX_PORT}/esg-search/search",
                          params={"project": "CMIP6", "facets": "source_id",
                                  "format": "application/solr+json", "limit": "1"})  # fmt: skip
        path = self.files[0][0] if self.files else "/thredds/fileServer/..."
        a, b, c = SITES.values()
        ns = ", ".join(f"{n} {addr}:{self.dns_port}" for n, addr in NAME_SERVERS.items())
        return f"""
The federation is up: master {master_url(self.config)}, sites
{", ".join(f"{n} {addr}" for n, addr in SITES.items())}, and a DNS server at every site
({ns}; zone {ZONE}): each checks every site itself, any of them answers.

Ask any DNS server which sites serve you (the healthy ones in random order, TTL 2 s):
  dig @{a} -p {self.dns_port} search.esgf.test A +short
  dig @{c} -p {self.dns_port} data.esgf.test A +short
  dig @{b} -p {self.dns_port} esgf.test NS        # every server, with glue

Search and download through the service names (curl resolves them with our DNS's answer):
  IP=$(dig @{a} -p {self.dns_port} search.esgf.test A +short | head -1)
  curl --resolve search.esgf.test:{INDEX_PORT}:$IP '{cmip6}'
  IP=$(dig @{a} -p {self.dns_port} data.esgf.test A +short | head -1)
  curl --resolve data.esgf.test:{DATA_PORT}:$IP -O 'http://data.esgf.test:{DATA_PORT}{path}'

The same search at each site (every site holds the same records and files):
  curl 'http://{a}:{INDEX_PORT}/esg-search/search?project=CMIP6&limit=0&format=application/solr%2Bjson'
  curl 'http://{b}:{INDEX_PORT}/esg-search/search?project=CMIP6&limit=0&format=application/solr%2Bjson'
  curl 'http://{c}:{DATA_PORT}/thredds/catalog/catalog.xml'

In a browser, the search page of any site, and its STAC API (pystac-client: Client.open(URL)):
  http://{a}:{INDEX_PORT}/    http://{a}:{INDEX_PORT}/stac

esgf-pyclient:
  from pyesgf.search import SearchConnection
  conn = SearchConnection('http://{b}:{INDEX_PORT}/esg-search', distrib=False)
  ctx = conn.new_context(project='CMIP6')
  print(ctx.hit_count, ctx.facet_counts['source_id'])

The federation at a glance (each DNS server's view, and whether they agree):
  esgf-ha status -c {self.state_dir / "federation.yaml"}

Watch failover: kill site-b's index (the supervisor restarts it a second later), and ask the DNS:
  pkill -9 -f 'listen {b}:{INDEX_PORT}'; for i in $(seq 10); do dig @{a} -p {self.dns_port} search.esgf.test +short; sleep 0.5; done
"""

    # -- failover under load -------------------------------------------------------------------
    def failover(self) -> dict[str, Any]:
        """Kill the whole of site-b (index, data node and DNS server), keep searching and
        downloading through the service names with a retrying client, bring it back, and time
        what the DNS servers do."""
        victim = self.config.site(VICTIM)
        victim_ns = f"ns-{VICTIM.removeprefix('site-')}"
        resolver = ServiceClient(self.dns_servers())
        stop = threading.Event()
        counts = {"requests": 0, "failed": 0, "wrong": 0}
        # one prober per server, with its own cache (the load honours TTLs)
        probers = {
            name: ServiceClient([(address, self.dns_port)])
            for name, address in NAME_SERVERS.items()
        }

        def answered(name: str) -> set[str]:
            return probers[name].all_addresses(f"search.{ZONE}".rstrip("."), rounds=4)

        def every_server(want: bool, servers: list[str]) -> bool:
            return all((victim.address in answered(n)) == want for n in servers)

        live = [n for n in NAME_SERVERS if n != victim_ns]

        worker = threading.Thread(target=self._load, args=(resolver, stop, counts), daemon=True)
        worker.start()
        time.sleep(2.0)

        everyone = set(SITES.values())
        try:
            _wait("every site in every DNS server's answers",
                  lambda: all(answered(n) == everyone for n in NAME_SERVERS), 30)  # fmt: skip
        except DemoFailed:
            first = next(iter(NAME_SERVERS.values()))
            status = httpx.get(f"http://{first}:{DNS_HTTP_PORT}/api/v1/status").json()
            raise DemoFailed(f"not every site is healthy: {status['sites']}") from None
        services = [f"{VICTIM}/index", f"{VICTIM}/data", f"dns/{victim_ns}"]
        killed_at = time.monotonic()
        for service in services:
            self.supervisor.kill(service)
        _wait("the other DNS servers to drop site-b", lambda: every_server(False, live), 30)
        gone_after = time.monotonic() - killed_at
        time.sleep(2.0)
        for service in services:
            self.supervisor.release(service)
        urls = [victim.index_url, str(victim.data_url)]
        _wait("site-b to be ready again", lambda: all(
            _readiness(u, timeout=1)[0] == 200 for u in urls), 120)  # fmt: skip
        ready_at = time.monotonic()
        _wait("the DNS servers to answer site-b again",
              lambda: every_server(True, list(NAME_SERVERS)), 30)  # fmt: skip
        back_after = time.monotonic() - ready_at
        time.sleep(1.0)
        stop.set()
        worker.join(30)
        return {
            "dns_dropped_dead_site_after_s": round(gone_after, 2),
            "dns_answered_site_again_after_ready_s": round(back_after, 2),
            "requests": counts["requests"],
            "failed_requests": counts["failed"],
            "wrong_answers": counts["wrong"],
            "retried_on_next_address": resolver.retries,
            "dns_servers": len(NAME_SERVERS),
            "lost_dns_server": victim_ns,
        }

    def _load(self, resolver: ServiceClient, stop: threading.Event, counts: dict[str, int]) -> None:
        """Search and download through the service names until `stop`, counting outcomes."""
        search = "/esg-search/search?project=CMIP6&limit=1&format=application%2Fsolr%2Bjson"
        with httpx.Client() as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 2:
                        r = resolver.get(client, f"search.{ZONE}".rstrip("."), INDEX_PORT,
                                         search)  # fmt: skip
                        ok = r.status_code == 200 and r.json()["response"]["numFound"] > 0
                    else:
                        path, size, _ = self.files[i % len(self.files)]
                        r = resolver.get(client, f"data.{ZONE}".rstrip("."), DATA_PORT, path)
                        ok = r.status_code == 200 and len(r.content) == size
                    counts["requests"] += 1
                    counts["wrong"] += not ok
                except httpx.HTTPError:
                    counts["requests"] += 1
                    counts["failed"] += 1

    def stop(self) -> None:
        if hasattr(self, "supervisor"):
            self.supervisor.stop_all()


def check(demo: Demo) -> tuple[bool, dict[str, Any]]:
    problems = demo.verify_sites()
    figures = demo.failover()
    ok = (
        not problems
        and figures["dns_dropped_dead_site_after_s"] < 3.0
        and figures["dns_answered_site_again_after_ready_s"] < 3.0
        and figures["failed_requests"] == 0
        and figures["wrong_answers"] == 0
    )
    return ok, {"problems": problems, "failover": figures}


def summary_line(result: dict[str, Any]) -> str:
    return orjson.dumps(result).decode()
