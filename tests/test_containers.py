"""The image and the Compose deployment, for real: `deploy/container/build-image.sh` (what
`make image` runs) builds the image with podman, `podman-compose` brings up
deploy/compose/compose.yaml (a master, two sites, the DNS and the publisher of sample data),
and a client finds the services through our DNS container, searches, downloads and verifies
a file; one site's containers are killed and the DNS drops the site; the restart policy brings
a killed service back; everything stops with status 0 and leaves nothing behind.

The first run on a machine installs podman, runc and debootstrap and makes the Debian base
image (about 4 minutes in all); later runs reuse podman's storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest
import yaml

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "deploy" / "container" / "containers.conf"
COMPOSE_DIR = REPO / "deploy" / "compose"
IMAGE = "localhost/esgf-ha:dev"
CONFIG = yaml.safe_load((COMPOSE_DIR / "federation.yaml").read_text())
PROJECT = CONFIG["name"]
DNS_ADDRESS, DNS_PORT = CONFIG["dns"]["address"], CONFIG["dns"]["port"]
ZONE = CONFIG["dns"]["zone"]
SITES = {s["name"]: s for s in CONFIG["sites"]}
ENV = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


def podman_compose(workdir: Path, *args: str, timeout: float = 300) -> None:
    exe = Path(sys.executable).parent / "podman-compose"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "podman_compose"]
    done = subprocess.run(
        [*command, "-f", str(workdir / "compose.yaml"), *args],
        env=ENV, cwd=workdir, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def container(service: str) -> str:
    return f"{PROJECT}_{service}_1"


def inspect(service: str) -> dict:
    return json.loads(podman("inspect", container(service)))[0]


def leftovers() -> dict[str, list[str]]:
    """What of the deployment still exists in podman: containers, pods, networks, volumes."""
    label = f"label=io.podman.compose.project={PROJECT}"
    return {
        "containers": podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").split(),
        "pods": [p for p in podman("pod", "ls", "--format", "{{.Name}}").split() if PROJECT in p],
        "networks": [
            n for n in podman("network", "ls", "--format", "{{.Name}}").split() if PROJECT in n
        ],
        "volumes": [
            v for v in podman("volume", "ls", "--format", "{{.Name}}").split()
            if v.startswith(PROJECT + "_")
        ],
    }  # fmt: skip


def resolve(name: str) -> list[str]:
    """Ask our DNS container, as a stub resolver would."""
    query = dns.message.make_query(f"{name}.{ZONE}", dns.rdatatype.A)
    response = dns.query.udp(query, DNS_ADDRESS, port=DNS_PORT, timeout=2)
    return [r.address for rrset in response.answer for r in rrset]


def answered(name: str, tries: int = 30) -> set[str]:
    seen: set[str] = set()
    for _ in range(tries):
        seen.update(resolve(name))
    return seen


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.5
) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (httpx.HTTPError, OSError, dns.exception.DNSException) as exc:
            last = exc
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def search(address: str, **params: object) -> dict:
    params = {"format": "application/solr+json", **params}
    r = httpx.get(f"http://{address}:{SITES['site-a']['index_port']}/esg-search/search",
                  params=params, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if os.geteuid() != 0 and shutil.which("podman") is None:
        pytest.skip("needs root to install podman, or podman installed")
    began = time.monotonic()
    built = subprocess.run(
        [str(REPO / "deploy" / "container" / "build-image.sh"), IMAGE],
        env=ENV, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(f"image built in {time.monotonic() - began:.0f} s")
    yield IMAGE


@pytest.fixture(scope="module")
def federation(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert not any(leftovers().values()), f"a previous run left {leftovers()}"
    workdir = tmp_path_factory.mktemp("compose")
    for name in ("compose.yaml", "federation.yaml"):
        shutil.copy(COMPOSE_DIR / name, workdir / name)
    made = subprocess.run(
        [sys.executable, "-m", "esgf_ha", "deploy", "secrets", "-c", "federation.yaml",
         "--out", "secrets"],
        cwd=workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    began = time.monotonic()
    try:
        podman_compose(workdir, "up", "-d")
        print(f"podman-compose up returned in {time.monotonic() - began:.0f} s")
        yield workdir
    finally:
        left = {}
        try:
            podman_compose(workdir, "down", "-v", "-t", "40", timeout=600)
        finally:
            left = leftovers()
            # never leave anything behind, even when the check below fails
            for name in left["containers"]:
                podman("rm", "-f", "-v", name, check=False)
            for name in left["pods"]:
                podman("pod", "rm", "-f", name, check=False)
            for name in left["volumes"]:
                podman("volume", "rm", "-f", name, check=False)
        assert not any(left.values()), f"podman-compose down left {left}"


def test_image_is_small_labelled_non_root_and_starts_fast_on_a_read_only_root(image: str) -> None:
    info = json.loads(podman("image", "inspect", image))[0]
    size_mb = info["Size"] / 1e6
    print(f"image size {size_mb:.0f} MB")
    # the target is 250 MB (docs/benchmarks.md: missed since the libcurl receiver and the CQL2
    # parser joined, 273 MB); this bound catches a dependency that adds tens of megabytes
    assert size_mb < 300
    labels = info["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"]
    assert labels["org.opencontainers.image.source"]
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Entrypoint"] == ["esgf-ha"]
    listen = "127.0.13.250:18080"
    for kind, args in (
        ("index", ["serve", "index", "--state-dir", "/var/lib/esgf-ha/index"]),
        ("data", ["serve", "data", "--state-dir", "/var/lib/esgf-ha/data",
                  "--root", "esg_dataroot=/srv/esgf"]),
    ):  # fmt: skip
        began = time.monotonic()
        name = f"esgf-ha-start-{kind}"
        podman("run", "-d", "--rm", "--name", name, "--read-only", "--network", "host",
               "--no-healthcheck", image, *args, "--listen", listen)  # fmt: skip
        try:
            wait_for(lambda: httpx.get(f"http://{listen}/readyz", timeout=1).status_code == 200,
                     30, f"{kind} ready", poll=0.02)  # fmt: skip
            took = time.monotonic() - began
            print(f"{kind}: container start to ready {took:.2f} s")
            # the target is 3 s on an idle machine (docs/benchmarks.md); shared test machines
            # are slower, so this only catches a start that hangs or regresses badly
            assert took < 15
            podman("stop", "-t", "30", name)
        finally:
            podman("rm", "-f", name, check=False)


def test_search_and_a_verified_download_through_the_dns_names(federation: Path) -> None:
    publisher = container("publisher")
    wait_for(lambda: podman("inspect", publisher, "--format", "{{.State.Status}}").strip()
             == "exited", 180, "the publisher finished")  # fmt: skip
    assert inspect("publisher")["State"]["ExitCode"] == 0
    # both sites serve search and data once the replicas and the replicator caught up
    wait_for(lambda: answered("search") == {s["address"] for s in SITES.values()}, 120,
             "the DNS answers both sites")  # fmt: skip
    for address in (s["address"] for s in SITES.values()):
        wait_for(lambda a=address: search(a, type="File", limit=0)["response"]["numFound"] > 0,
                 120, f"files searchable at {address}")  # fmt: skip
    wait_for(lambda: search(SITES["site-b"]["address"], replica="true", limit=0)
             ["response"]["numFound"] > 0, 180, "site-b replicated the sample data")  # fmt: skip

    address = resolve("search")[0]
    hits = search(address, type="File", project="CMIP6", limit=5)["response"]["docs"]
    assert hits, "no file records"
    doc = hits[0]
    url = next(u.split("|")[0] for u in doc["url"] if u.endswith("HTTPServer"))
    path = url.split("/thredds/", 1)[1]
    checksum = doc["checksum"][0]
    downloaded = set()
    deadline = time.monotonic() + 60
    while downloaded != {s["address"] for s in SITES.values()} and time.monotonic() < deadline:
        data = resolve("data")[0]
        port = next(s["data_port"] for s in SITES.values() if s["address"] == data)
        r = httpx.get(f"http://{data}:{port}/thredds/{path}", follow_redirects=True, timeout=30)
        assert r.status_code == 200, r.text
        assert hashlib.sha256(r.content).hexdigest() == checksum
        downloaded.add(data)
    assert downloaded == {s["address"] for s in SITES.values()}


def test_a_killed_site_leaves_the_dns_answers_and_comes_back(federation: Path) -> None:
    site = SITES["site-b"]
    services = [f"site-b-{kind}" for kind in ("index", "data", "replicator")]
    podman("kill", *[container(s) for s in services])
    wait_for(lambda: answered("search") == {SITES["site-a"]["address"]}, 30,
             "the DNS drops site-b")  # fmt: skip
    assert answered("data", 20) == {SITES["site-a"]["address"]}
    # users still search, at the site the DNS gives them
    assert search(resolve("search")[0], limit=0)["response"]["numFound"] > 0
    podman("start", *[container(s) for s in services])
    wait_for(lambda: site["address"] in answered("search"), 60, "the DNS answers site-b again")


def test_the_restart_policy_brings_a_crashed_service_back(federation: Path) -> None:
    service = "site-b-index"
    before = inspect(service)
    assert before["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    os.kill(before["State"]["Pid"], 9)  # a crash, not a stop: the policy applies
    site = SITES["site-b"]

    def back() -> bool:
        now = inspect(service)
        return (
            now["State"]["Status"] == "running"
            and now["State"]["Pid"] != before["State"]["Pid"]
            and httpx.get(f"http://{site['address']}:{site['index_port']}/readyz",
                          timeout=2).status_code == 200
        )  # fmt: skip

    wait_for(back, 60, "site-b's index restarted by its policy")
    assert inspect(service)["RestartCount"] > before.get("RestartCount", 0)


class RetryingClient:
    """A user of the federation: finds a site through the DNS for every request (keeping an
    answer for its TTL, and using the last one while no DNS server answers, as resolvers
    do), and on a refused connection, a timeout or a 5xx asks the DNS again and retries."""

    def __init__(self, attempts: int = 40) -> None:
        self.attempts = attempts
        self.cache: dict[str, tuple[float, list[str]]] = {}
        self.requests = self.retries = self.failures = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def address(self, name: str, fresh: bool) -> str:
        expires, addresses = self.cache.get(name, (0.0, []))
        if fresh or time.monotonic() > expires or not addresses:
            try:
                addresses = resolve(name) or addresses
                self.cache[name] = (time.monotonic() + CONFIG["dns"]["ttl"], addresses)
            except (dns.exception.DNSException, OSError):
                pass  # no DNS answer right now: the last one, stale, is better than none
        assert addresses, f"no address for {name}"
        return random.choice(addresses)

    def get(self, name: str, port_of: dict[str, int], path: str) -> httpx.Response:
        fresh = False
        for attempt in range(self.attempts):
            address = self.address(name, fresh)
            try:
                r = httpx.get(f"http://{address}:{port_of[address]}{path}",
                              follow_redirects=True, timeout=10)  # fmt: skip
                if r.status_code < 500:
                    with self.lock:
                        self.requests += 1
                        self.retries += attempt
                    return r
                problem = f"{r.status_code} from {address}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__} from {address}"
            fresh = True
            time.sleep(0.25)
        with self.lock:
            self.requests += 1
            self.failures += 1
            self.errors.append(problem)
        raise AssertionError(f"{path}: {problem} after {self.attempts} attempts")


def test_rolling_restart_of_every_service_under_load_fails_no_request(federation: Path) -> None:
    """Each service in turn gets SIGTERM (podman stop), must exit 0, is started again and is
    ready before the next; meanwhile users search and download through the DNS names."""
    index_port = {s["address"]: s["index_port"] for s in SITES.values()}
    data_port = {s["address"]: s["data_port"] for s in SITES.values()}
    wait_for(lambda: answered("search") == set(index_port), 120, "both sites answered")
    doc = search(resolve("search")[0], type="File", project="CMIP6", replica="false",
                 limit=1)["response"]["docs"][0]  # fmt: skip
    path = "/thredds/" + next(u for u in doc["url"] if u.endswith("HTTPServer")).split(
        "|")[0].split("/thredds/", 1)[1]  # fmt: skip
    client = RetryingClient()
    stop = threading.Event()
    bad: list[str] = []

    def searches() -> None:
        while not stop.is_set():
            r = client.get(
                "search",
                index_port,
                "/esg-search/search?format=application/solr%2Bjson&project=CMIP6",
            )
            if r.status_code != 200 or r.json()["response"]["numFound"] == 0:
                bad.append(f"search answered {r.status_code}: {r.text[:200]}")

    def downloads() -> None:
        while not stop.is_set():
            r = client.get("data", data_port, path)
            if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != doc["checksum"][0]:
                bad.append(f"download answered {r.status_code}, {len(r.content)} bytes")

    workers = [threading.Thread(target=f, daemon=True) for f in (searches, searches, downloads)]
    for w in workers:
        w.start()
    services = yaml.safe_load((federation / "compose.yaml").read_text())["services"]
    order = [s for s in services if s != "publisher"]
    began = time.monotonic()
    try:
        for service in order:
            podman("stop", "-t", "40", container(service), timeout=120)
            assert inspect(service)["State"]["ExitCode"] == 0, f"{service} stopped uncleanly"
            podman("start", container(service))
            url = services[service].get("environment", {}).get("ESGF_HA_LIVEZ_URL")
            if url is not None:
                ready = url.removesuffix("/livez") + "/readyz"
                wait_for(lambda u=ready: httpx.get(u, timeout=2).status_code == 200, 90,
                         f"{service} ready again", poll=0.2)  # fmt: skip
            # back in the answers before the next one goes
            wait_for(lambda: answered("search", 10) == set(index_port), 60,
                     f"both sites answered after {service}", poll=0.2)  # fmt: skip
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    took = time.monotonic() - began
    print(f"rolling restart of {len(order)} services in {took:.0f} s: {client.requests} "
          f"requests, {client.retries} retries, {client.failures} failed")  # fmt: skip
    assert client.failures == 0, client.errors
    assert not bad, bad[:5]
    assert client.requests > 5 * len(order)


def test_every_service_stops_on_sigterm_with_status_0(federation: Path) -> None:
    podman_compose(federation, "stop", "-t", "40", timeout=600)
    statuses = {}
    for service in (s for s in yaml.safe_load((federation / "compose.yaml").read_text())
                    ["services"]):  # fmt: skip
        state = inspect(service)["State"]
        statuses[service] = (state["Status"], state["ExitCode"])
    assert all(status == "exited" for status, _ in statuses.values()), statuses
    assert {s: code for s, (_, code) in statuses.items() if code != 0} == {}
