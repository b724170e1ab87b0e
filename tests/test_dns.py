"""The health-checked DNS load balancer: real sites (index servers on their own 127.0.1.x
addresses), our DNS server queried with `dig`, and real BIND driven by RFC 2136 updates."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import httpx
import pytest

from esgf_ha.balancer.answers import Zone, answer
from esgf_ha.federation.config import ConfigError, parse_config
from tests.balancer import Balancer, Bind, answers, dig, wait_for, write_config
from tests.servers import IndexServer, free_port

ZONE = "esgf.test"
SEARCH = f"search.{ZONE}"
ADDRESSES = ["127.0.1.2", "127.0.1.3"]


# -- config -----------------------------------------------------------------------------------
def test_config_errors_name_the_key() -> None:
    good = {"sites": [{"name": "a", "address": "127.0.1.2"}], "dns": {"zone": ZONE}}
    config = parse_config(good)
    assert config.dns.zone == "esgf.test." and config.dns.ttl == 5
    assert config.sites[0].index_url == "http://127.0.1.2:8080"
    cases = {
        "sites[0].index_port": {"sites": [{"name": "a", "address": "127.0.1.2", "index_port": 0}]},
        "sites[0].address": {"sites": [{"name": "a", "address": "site-a"}]},
        "sites[0].colour: unknown key": {"sites": [{"name": "a", "address": "1.2.3.4", "colour": 1}]},
        "health.interval": {**good, "health": {"interval": -1}},
        "dns: mode rfc2136 needs": {**good, "dns": {"mode": "rfc2136"}},
        "(top level): site names must be distinct": {"sites": [{"name": "a", "address": "127.0.1.2"},
                                                  {"name": "a", "address": "127.0.1.3"}]},
        "sites[0]: tls_cert and tls_key go together": {"sites": [
            {"name": "a", "address": "127.0.1.2", "tls": True, "tls_cert": "/x.pem"}]},
        "master: tls_cert is given but tls is false": {**good, "master": {
            "tls_cert": "/x.pem", "tls_key": "/x.key"}},
    }  # fmt: skip
    for where, data in cases.items():
        with pytest.raises(ConfigError) as err:
            parse_config(data, "fed.yaml")
        text = str(err.value)
        assert text.startswith(f"fed.yaml: {where}"), text


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path / "fed.yaml", {"sites": [{"name": "a", "adress": "127.0.1.2"}]})
    run = subprocess.run(
        [sys.executable, "-m", "esgf_ha", "serve", "dns", "-c", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "sites[0].adress: unknown key" in run.stderr
    assert "sites[0].address: Field required" in run.stderr
    assert "Traceback" not in run.stderr


# -- answers without sockets ------------------------------------------------------------------
def _zone(max_records: int = 1) -> Zone:
    config = parse_config(
        {
            "sites": [
                {"name": "a", "address": "127.0.1.2"},
                {"name": "b", "address": "127.0.1.3"},
                {"name": "c", "address": "::1", "data_port": None},
            ],
            "dns": {"zone": ZONE, "ttl": 3, "max_records": max_records},
        }
    )
    return Zone.from_config(config.dns, config.sites)


def _ask(zone: Zone, name: str, rdtype: str = "A") -> dns.message.Message:
    return answer(dns.message.make_query(name, rdtype), zone)


def test_answers_follow_health_and_fail_open() -> None:
    zone = _zone()
    config_sites = parse_config({"sites": [{"name": "a", "address": "127.0.1.2"}]}).sites
    zone.set_healthy(config_sites)
    for _ in range(20):
        r = _ask(zone, SEARCH)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        assert [str(rr) for rr in r.answer[0]] == ["127.0.1.2"] and r.answer[0].ttl == 3
    zone.set_healthy([])  # nothing healthy: every site, never an empty answer
    seen = {str(rr) for _ in range(50) for rr in _ask(zone, SEARCH).answer[0]}
    assert seen == set(ADDRESSES)
    # the index-only site answers AAAA for search, never for data
    assert [str(rr) for rr in _ask(zone, SEARCH, "AAAA").answer[0]] == ["::1"]
    nodata = _ask(zone, f"data.{ZONE}", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


def test_answers_zone_records_and_refusals() -> None:
    zone = _zone(max_records=2)
    assert len(_ask(zone, SEARCH).answer[0]) == 2
    assert _ask(zone, ZONE, "SOA").answer[0].rdtype == dns.rdatatype.SOA
    ns = _ask(zone, ZONE, "NS")
    assert str(ns.answer[0][0]) == f"ns1.{ZONE}." and ns.additional
    missing = _ask(zone, f"nope.{ZONE}")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.authority
    outside = _ask(zone, "example.org")
    assert outside.rcode() == dns.rcode.REFUSED and not outside.flags & dns.flags.AA
    # the serial is the zone's, not the process's: health changes and restarts keep it
    serial = zone.serial
    zone.set_healthy([])
    zone.set_healthy(parse_config({"sites": [{"name": "b", "address": "127.0.1.3"}]}).sites)
    assert zone.serial == serial == _zone().serial


# -- real processes ---------------------------------------------------------------------------
@pytest.fixture
def two_sites(tmp_path: Path) -> Iterator[list[IndexServer]]:
    sites = []
    for i, address in enumerate(ADDRESSES):
        listen = f"{address}:{free_port(address)}"
        sites.append(IndexServer(tmp_path / f"site{i}", listen=listen).start())
    yield sites
    for site in sites:
        site.stop()


def _federation(tmp_path: Path, sites: list[IndexServer], **dns_extra: object) -> Path:
    return write_config(
        tmp_path / "federation.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sites": [
                {
                    "name": f"site{i}",
                    "address": s.listen.rsplit(":", 1)[0],
                    "index_port": int(s.listen.rsplit(":", 1)[1]),
                    "data_port": None,
                }
                for i, s in enumerate(sites)
            ],
            "dns": {"zone": ZONE, "address": "127.0.0.1", "port": 0, "ttl": 1,
                    "max_records": 1, **dns_extra},
            "health": {"interval": 0.25, "timeout": 0.5, "failures": 2, "recoveries": 1},
        },
    )  # fmt: skip


def test_dead_site_leaves_the_answers_and_rejoins(
    tmp_path: Path, two_sites: list[IndexServer]
) -> None:
    balancer = Balancer(_federation(tmp_path, two_sites), tmp_path / "dns").start()
    try:
        port = balancer.dns_port
        wait_for(lambda: answers(port, SEARCH, 20) == set(ADDRESSES), 10)
        assert dig(port, SEARCH, "A", "+tcp", "+short").strip() in ADDRESSES
        soa = dig(port, ZONE, "SOA", "+noall", "+answer", "+norecurse")
        assert "hostmaster.esgf.test." in soa
        assert "status: REFUSED" in dig(port, "example.org", "A", "+noall", "+comments")

        dead, alive = two_sites
        killed_at = time.monotonic()
        dead.kill()
        wait_for(lambda: answers(port, SEARCH, 10) == {ADDRESSES[1]}, 5)
        left_after = time.monotonic() - killed_at
        assert left_after < 3.0, left_after
        status = balancer.status()
        assert [s["healthy"] for s in status["sites"]] == [False, True]
        assert "index" in status["sites"][0]["reason"]

        dead.start()  # same address and port
        ready_at = time.monotonic()
        wait_for(lambda: ADDRESSES[0] in answers(port, SEARCH, 10), 5)
        rejoined_after = time.monotonic() - ready_at
        assert rejoined_after < 3.0, rejoined_after

        for site in two_sites:  # everything down: fail open, both addresses again
            site.kill()
        wait_for(lambda: balancer.status()["fail_open"] == ["search"], 5)
        assert answers(port, SEARCH, 30) == set(ADDRESSES)

        metrics = httpx.get(balancer.url + "/metrics").text
        assert 'esgf_ha_dns_queries_total{rcode="NOERROR",transport="udp"}' in metrics
        assert 'esgf_ha_site_healthy{site="site0"} 0.0' in metrics
    finally:
        balancer.stop()


def test_rfc2136_drives_a_real_bind(tmp_path: Path, two_sites: list[IndexServer]) -> None:
    bind = Bind(tmp_path / "bind", ZONE).start()
    config = _federation(
        tmp_path,
        two_sites,
        mode="rfc2136",
        rfc2136={"server": "127.0.0.1", "port": bind.port,
                 "tsig_key_name": bind.key_name, "tsig_secret": bind.secret},
    )  # fmt: skip
    balancer = Balancer(config, tmp_path / "dns").start()
    try:
        # BIND holds every healthy address and round-robins them itself
        wait_for(lambda: answers(bind.port, SEARCH) == set(ADDRESSES), 10)
        assert answers(bind.port, f"data.{ZONE}") == set()  # index-only sites: no data name
        two_sites[0].kill()
        took = wait_for(lambda: answers(bind.port, SEARCH) == {ADDRESSES[1]}, 5)
        assert took < 3.0
        assert balancer.status()["rfc2136"]["failures"] == 0
        # a wrong key is refused by BIND and reported, not ignored
        bad = Bind(tmp_path / "bind2", ZONE).start()
        try:
            wrong = write_config(
                tmp_path / "wrong.yaml",
                {**_load(config), "dns": {**_load(config)["dns"], "rfc2136": {
                    "server": "127.0.0.1", "port": bad.port, "tsig_key_name": bad.key_name,
                    "tsig_secret": bind.secret}}},
            )  # fmt: skip
            other = Balancer(wrong, tmp_path / "dns2").start()
            try:
                wait_for(lambda: other.status()["rfc2136"]["failures"] > 0, 10)
                assert answers(bad.port, SEARCH) == set()
            finally:
                other.stop()
        finally:
            bad.stop()
    finally:
        balancer.stop()
        bind.stop()


def _load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())
