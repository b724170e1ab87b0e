"""The whole federation: `esgf-ha demo --check`, `esgf-ha up` with `status` and restarts, and
an unmodified esgf-pyclient resolving the service name through the system resolver inside a
network namespace whose resolv.conf points at our DNS."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.balancer import wait_for, write_config
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
PYESGF = REPO / ".venv-clients" / "pyesgf" / "bin" / "python"


def esgf_ha(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "esgf_ha", *args], capture_output=True,
                          text=True, timeout=timeout, **kwargs)  # fmt: skip


def test_demo_check_passes_and_reports_failover(tmp_path: Path) -> None:
    run = esgf_ha("demo", "--check", "--json", "--state-dir", str(tmp_path / "demo"), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = orjson.loads(run.stdout.strip().splitlines()[-1])
    assert result["problems"] == []
    f = result["failover"]
    assert f["dns_dropped_dead_site_after_s"] < 3.0
    assert f["dns_answered_site_again_after_ready_s"] < 3.0
    assert f["failed_requests"] == 0 and f["wrong_answers"] == 0 and f["requests"] > 50
    assert "demo check passed" in run.stderr


def _pid(endpoint: Path) -> int:
    return int(orjson.loads(endpoint.read_bytes())["pid"])


@pytest.fixture(params=[False, True], ids=["http", "https"])
def federation(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """`esgf-ha up` of a master and two sites (site-b replicating site-a) on 127.0.3.x, over
    HTTP, or with every service on HTTPS under one federation CA."""
    tls = request.param
    address = {"master": "127.0.3.1", "site-a": "127.0.3.2", "site-b": "127.0.3.3"}
    roots = {name: tmp_path / "data" / name for name in ("site-a", "site-b")}
    for root in roots.values():
        root.mkdir(parents=True)
    config = write_config(tmp_path / "federation.yaml", {
        "name": "test", "state_dir": "state",
        "master": {"address": address["master"], "port": free_port(address["master"]),
                   "tls": tls},
        "sites": [
            {"name": name, "address": address[name], "index_port": free_port(address[name]),
             "data_port": free_port(address[name]), "data_roots": {"esg_dataroot": str(root)},
             "tls": tls,
             **({"replication": {"query": "project=CMIP6"}} if name == "site-b" else {})}
            for name, root in roots.items()
        ],
        "dns": {"zone": "esgf.test", "address": address["master"], "port": 0,
                "http_port": free_port(address["master"]), "ttl": 1},
        "health": {"interval": 0.3, "failures": 2, "recoveries": 1},
    })  # fmt: skip
    # the child holds its own copy of the descriptor: ours is closed at once
    with open(tmp_path / "up.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "esgf_ha", "up", "-c", str(config)],
                                stdout=log, stderr=log)  # fmt: skip
    try:
        yield config, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for endpoint in (tmp_path / "state").rglob("*.endpoint.json"):  # never leave a child
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(_pid(endpoint), signal.SIGKILL)


def test_up_status_restart_and_clean_stop(
    tmp_path: Path, federation: tuple[Path, subprocess.Popen[bytes]]
) -> None:
    config, up = federation

    def status() -> dict:
        run = esgf_ha("status", "-c", str(config), "--json")
        assert run.stdout, run.stderr
        return dict(json.loads(run.stdout), returncode=run.returncode)

    wait_for(lambda: status()["returncode"] == 0, 60, 0.5)
    state = status()
    scheme = state["master"]["url"].split("://")[0]
    ca = tmp_path / "state" / "master" / "tls" / "ca.pem"
    verify = ssl.create_default_context(cafile=str(ca)) if scheme == "https" else True
    urls = [state["master"]["url"]] + [
        s[k]["url"] for s in state["sites"] for k in ("index", "data")
    ]
    assert {u.split("://")[0] for u in urls} == {scheme}
    assert state["master"]["ready"] and [s["index"]["ready"] for s in state["sites"]] == [True] * 2
    assert all(s["data"]["ready"] for s in state["sites"])
    assert state["sites"][1]["index"]["detail"]["role"] == "replica"
    wait_for(lambda: set(status()["answers"]["search"]) == {"127.0.3.2", "127.0.3.3"}, 20, 0.5)
    table = esgf_ha("status", "-c", str(config))
    assert table.returncode == 0
    assert "site-b" in table.stdout and "search.esgf.test." in table.stdout

    # publish at site-a: site-b's replica index and replicator follow
    samples = tmp_path / "data" / "site-a"
    assert esgf_ha("sample-data", str(samples), "--datasets", "2").returncode == 0
    site_a = state["sites"][0]["data"]["url"].split("://")[1]
    token = esgf_ha("token", "issue", "--state-dir", str(tmp_path / "state" / "master"),
                    "--scope", "esgf:publish").stdout.strip()  # fmt: skip
    cacert = ["--cacert", str(ca)] if scheme == "https" else []
    published = esgf_ha("publish", "--index", state["master"]["url"], "--token", token, *cacert,
                        "--data-node", site_a, "--url-base", f"{scheme}://{site_a}",
                        "--root", f"esg_dataroot={samples}", "--no-progress", str(samples))  # fmt: skip
    assert published.returncode == 0, published.stderr[-2000:]
    site_b = state["sites"][1]
    search = site_b["index"]["url"] + "/esg-search/search"

    def replicated() -> bool:
        r = httpx.get(search, params={"data_node": site_b["data"]["url"].split("://")[1],
                                      "format": "application/solr+json", "limit": 0},
                      verify=verify)  # fmt: skip
        return bool(r.json()["response"]["numFound"] > 0)

    wait_for(replicated, 90, 0.5)
    copies = list((tmp_path / "data" / "site-b").rglob("*.nc"))
    assert copies
    # the copy is served by site-b's data node, over HTTPS when the federation uses TLS
    copy = copies[0].relative_to(tmp_path / "data" / "site-b")
    served = httpx.get(f"{site_b['data']['url']}/thredds/fileServer/esg_dataroot/{copy}",
                       verify=verify)  # fmt: skip
    assert served.status_code == 200 and served.content == copies[0].read_bytes()
    progress = status()["sites"][1]["replication"]
    assert progress["datasets"].get("published", 0) >= 1 and "failed" not in progress["files"]
    assert status()["sites"][0]["replication"] is None  # site-a replicates nothing

    # a crashed service is restarted by the supervisor
    endpoint = tmp_path / "state" / "sites" / "site-b" / "index" / "index.endpoint.json"
    old = _pid(endpoint)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _pid(endpoint) != old and status()["returncode"] == 0, 60, 0.5)

    # Ctrl-C stops every child
    children = [_pid(p) for p in (tmp_path / "state").rglob("*.endpoint.json")]
    up.send_signal(signal.SIGINT)
    assert up.wait(60) == 0
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"esgfha-{uuid.uuid4().hex[:8]}"
    ip = shutil.which("ip")
    assert ip, "ip (iproute2) is installed by `make system-deps`"
    subprocess.run([ip, "netns", "add", name], check=True)
    subprocess.run([ip, "netns", "exec", name, ip, "link", "set", "lo", "up"], check=True)
    conf = Path("/etc/netns") / name
    conf.mkdir(parents=True, exist_ok=True)
    # the demo's DNS servers, one per site, as a stub resolver would list them
    servers = "".join(f"nameserver 127.0.1.{i}\n" for i in (2, 3, 4))
    (conf / "resolv.conf").write_text(servers + "options timeout:1 attempts:2\n")
    try:
        yield name
    finally:
        subprocess.run([ip, "netns", "pids", name], capture_output=True)
        pids = subprocess.run([ip, "netns", "pids", name], capture_output=True, text=True).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run([ip, "netns", "del", name])
        shutil.rmtree(conf, ignore_errors=True)


def test_pyesgf_searches_through_the_system_resolver(tmp_path: Path, netns: str) -> None:
    assert PYESGF.exists(), "built by `make clients-setup`"
    inside = ["ip", "netns", "exec", netns]
    # the child holds its own copy of the descriptor: ours is closed at once
    with open(tmp_path / "demo.log", "ab") as log:
        demo = subprocess.Popen(
            [*inside, sys.executable, "-m", "esgf_ha", "demo", "--state-dir", str(tmp_path / "d"),
             "--dns-port", "53", "--datasets", "3"],
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait_for(lambda: b"Press Ctrl-C" in (tmp_path / "demo.log").read_bytes(), 300, 0.5)

        def pyesgf() -> dict:
            run = subprocess.run(
                [*inside, str(PYESGF), str(REPO / "tests/clients/drive_pyesgf.py"),
                 "http://search.esgf.test:8080", "--constraints", '{"project": "CMIP6"}',
                 "--facets", "source_id", "--latest", "true"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr[-2000:]
            return dict(json.loads(run.stdout.strip().splitlines()[-1]))

        before = pyesgf()
        assert before["local"]["hit_count"] > 0, before
        # site-b dies; the same client keeps searching through the same name
        state = tmp_path / "d" / "state" / "sites" / "site-b"
        for service in ("index", "data"):
            os.kill(_pid(state / service / f"{service}.endpoint.json"), signal.SIGKILL)
        for _ in range(3):
            after = pyesgf()
            assert after["local"]["hit_count"] == before["local"]["hit_count"], after
            time.sleep(0.5)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()


def test_plan_uses_operator_certificates_and_one_trust_bundle(tmp_path: Path) -> None:
    from esgf_ha.common.tls import ensure_server_tls
    from esgf_ha.federation.config import parse_config
    from esgf_ha.federation.plan import plan, trust_file
    from esgf_ha.federation.runner import service_certs

    own = ensure_server_tls(tmp_path / "operator", ["127.0.1.3"])  # a site's own certificate
    extra_ca = tmp_path / "extra-ca.pem"
    extra_ca.write_bytes(own.ca.read_bytes())
    config = parse_config({
        "state_dir": str(tmp_path / "state"), "master": {"tls": True},
        "auth": {"ca_file": str(extra_ca)},
        "sites": [{"name": "a", "address": "127.0.1.2", "tls": True},
                  {"name": "b", "address": "127.0.1.3", "tls": True,
                   "tls_cert": str(own.cert), "tls_key": str(own.key)}],
    })  # fmt: skip
    service_certs(config)
    tokens = {"replica": tmp_path / "r.jwt", "replicator": tmp_path / "r.jwt"}
    argv = {s.name: s.argv for s in plan(config, tmp_path / "f.yaml", tokens)}

    def after(name: str, option: str) -> str:
        return argv[name][argv[name].index(option) + 1]

    assert after("b/index", "--tls-cert") == str(own.cert) == after("b/data", "--tls-cert")
    issued = tmp_path / "state" / "sites" / "a" / "tls" / "server.pem"
    assert after("a/index", "--tls-cert") == str(issued) and issued.exists()
    assert not (tmp_path / "state" / "sites" / "b" / "tls").exists()
    trust = trust_file(config)
    assert trust is not None and after("a/index", "--upstream-ca") == str(trust)
    assert after("b/data", "--index-ca") == str(trust)
    # the bundle holds the federation CA and the operator's CA
    federation_ca = (tmp_path / "state" / "master" / "tls" / "ca.pem").read_bytes()
    assert federation_ca in trust.read_bytes() and own.ca.read_bytes() in trust.read_bytes()


def test_each_replicator_token_is_bound_to_its_own_sites_data_node(tmp_path: Path) -> None:
    """A replicator publishes replica records of its own site only: a leaked replicator token
    cannot rewrite another site's records."""
    import jwt

    from esgf_ha.federation.config import parse_config
    from esgf_ha.federation.plan import plan
    from esgf_ha.federation.runner import service_tokens

    config = parse_config({
        "state_dir": str(tmp_path / "state"),
        "sites": [{"name": "a", "address": "127.0.1.2", "data_port": 8001},
                  {"name": "b", "address": "127.0.1.3", "data_port": 8002,
                   "data_roots": {"root": str(tmp_path)},
                   "replication": {"query": "project=CMIP6"}}],
    })  # fmt: skip
    tokens = service_tokens(config)
    assert set(tokens) == {"replica", "replicator/b"}
    claims = jwt.decode(tokens["replicator/b"].read_text(), options={"verify_signature": False})
    assert claims["data_nodes"] == ["127.0.1.3:8002"]
    assert "data_nodes" not in jwt.decode(
        tokens["replica"].read_text(), options={"verify_signature": False}
    )
    argv = {s.name: s.argv for s in plan(config, tmp_path / "f.yaml", tokens)}
    replicator = argv["b/replicator"]
    assert replicator[replicator.index("--token-file") + 1] == str(tokens["replicator/b"])
