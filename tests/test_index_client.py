"""The shared index client and its retry policy: the policy on its own, the client against a
real index on loopback (plain and TLS), and the backoff's timing over an injected transport,
which stands in for the network only."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from esgf_ha.common.index_client import (
    AsyncIndexClient,
    IndexClient,
    IndexRefused,
    IndexUnreachable,
    error_text,
    tls_verify,
)
from esgf_ha.common.retry import Backoff, Transient
from esgf_ha.federation.plan import ProcessSpec
from esgf_ha.federation.supervisor import Supervisor
from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.servers import IndexServer, free_port

QUICK = Backoff(retries=2, first=0.01, cap=0.02)


# -- the policy ---------------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap() -> None:
    assert list(Backoff(retries=6, first=0.5, cap=3.0).delays()) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert list(Backoff(retries=0).delays()) == []


def test_run_retries_transient_failures_then_returns() -> None:
    slept: list[float] = []
    told: list[str] = []
    outcomes: list[object] = [Transient("down"), Transient("still down"), "answer"]

    def attempt() -> str:
        out = outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return str(out)

    policy = Backoff(retries=5, first=1.0)
    assert policy.run(attempt, on_retry=told.append, sleep=slept.append) == "answer"
    assert slept == [1.0, 2.0]
    assert told == ["down; retry 1/5 in 1.0 s", "still down; retry 2/5 in 2.0 s"]


def test_run_gives_up_with_the_last_failure_and_passes_other_errors_through() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise Transient(f"failure {len(calls)}")

    with pytest.raises(Transient, match="failure 4"):
        Backoff(retries=3).run(failing, sleep=lambda d: None)
    assert len(calls) == 4

    def broken() -> None:
        calls.append(1)
        raise KeyError("not a network problem")

    calls.clear()
    with pytest.raises(KeyError):
        Backoff(retries=3).run(broken, sleep=lambda d: None)
    assert len(calls) == 1


def test_async_run_waits_the_same_delays() -> None:
    tries = []

    async def attempt() -> int:
        tries.append(time.monotonic())
        if len(tries) < 3:
            raise Transient("not yet")
        return len(tries)

    assert asyncio.run(Backoff(retries=4, first=0.05).arun(attempt)) == 3
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1


# -- backoff timing over an injected network --------------------------------------------------------
def _flaky_network(failures: int, status: int = 503) -> tuple[httpx.MockTransport, list[float]]:
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        if len(seen) <= failures:
            return httpx.Response(status, json={"error": "restarting"})
        return httpx.Response(200, json={"ok": True})

    return httpx.MockTransport(handler), seen


def test_client_waits_between_retries_and_reports_each() -> None:
    transport, seen = _flaky_network(2)
    told: list[str] = []
    policy = Backoff(retries=3, first=0.1, cap=1.0)
    with IndexClient(
        "http://index.invalid", retry=policy, transport=transport, on_retry=told.append
    ) as client:
        assert client.get_json("/readyz") == {"ok": True}
    assert len(seen) == 3
    assert seen[1] - seen[0] >= 0.1 and seen[2] - seen[1] >= 0.2
    assert told[0].startswith("http://index.invalid/readyz: HTTP 503: restarting; retry 1/3")


def test_client_gives_up_after_the_last_retry_and_never_retries_a_4xx() -> None:
    transport, seen = _flaky_network(10)
    with (
        IndexClient("http://index.invalid", retry=QUICK, transport=transport) as client,
        pytest.raises(IndexUnreachable, match="after 2 retries: .*HTTP 503: restarting"),
    ):
        client.get_json("/readyz")
    assert len(seen) == 3
    transport, seen = _flaky_network(10, status=400)
    with (
        IndexClient("http://index.invalid", retry=QUICK, transport=transport) as client,
        pytest.raises(IndexRefused) as refused,
    ):
        client.get_json("/readyz")
    assert len(seen) == 1 and refused.value.status == 400


def test_send_is_one_attempt_answered_whatever_its_status() -> None:
    """What a caller with its own loop (the follower, the DNS health checks) relies on."""
    transport, seen = _flaky_network(10)
    with IndexClient("http://index.invalid", retry=QUICK, transport=transport) as client:
        r = client.send("GET", "/api/v1/changes", params={"since": 3})
    assert r.status_code == 503 and error_text(r) == "restarting" and len(seen) == 1

    async def nothing_listening() -> None:
        url = f"http://127.0.0.1:{free_port()}"
        async with AsyncIndexClient(url, retry=QUICK) as client:
            with pytest.raises(IndexUnreachable, match=r"/readyz: ConnectError") as failed:
                await client.send("GET", "/readyz")
        assert "retries" not in str(failed.value)

    asyncio.run(nothing_listening())


def test_an_endless_loop_takes_the_same_schedule() -> None:
    policy = Backoff(first=0.4, cap=5.0)
    assert [policy.delay(n) for n in range(6)] == [0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert policy.delay(10_000) == 5.0


def test_error_text_prefers_the_json_error() -> None:
    assert error_text(httpx.Response(400, json={"error": "bad facet"})) == "bad facet"
    assert error_text(httpx.Response(502, text=" proxy down \n")) == "proxy down"
    assert error_text(httpx.Response(503)) == "Service Unavailable"


# -- against a real index -------------------------------------------------------------------------
def test_publish_search_and_retract_against_a_real_index(index_server: IndexServer) -> None:
    samples = cmip6_samples(5)
    batch = as_batch(samples)
    with IndexClient(index_server.url + "/esg-search/", token=index_server.token()) as client:
        assert client.url == index_server.url
        answer = client.publish(batch["datasets"])  # type: ignore[arg-type]
        assert answer["seq"]
        docs = client.search_all({"type": "File", "fields": "id"}, page=3)
        files = sum(len(s.files) for s in samples)
        assert len(docs) == files and len({d["id"] for d in docs}) == files
        first = str(batch["datasets"][0]["dataset"]["id"])  # type: ignore[index]
        client.retract([first])
        found = client.search({"type": "Dataset", "id": first, "fields": "retracted"})
        assert found["response"]["docs"][0]["retracted"] is True
        status, ready = client.readiness()
        assert status == 200 and ready["seq"] >= 2


def test_a_refusal_carries_the_index_message(index_server: IndexServer) -> None:
    with (
        IndexClient(index_server.url, token="not-a-token", retry=QUICK) as client,
        pytest.raises(IndexRefused) as refused,
    ):
        client.retract(["x"])
    assert refused.value.status == 401
    assert "/api/v1/retract: HTTP 401: " in str(refused.value)
    with (
        IndexClient(index_server.url, retry=QUICK) as client,
        pytest.raises(IndexRefused, match="HTTP 400: .*"),
    ):
        client.search({"limit": "many"})


def test_async_pages_against_a_real_index(index_server: IndexServer) -> None:
    samples = cmip6_samples(4)
    assert index_server.publish(as_batch(samples)).status_code == 200

    async def pages() -> list[int]:
        async with AsyncIndexClient(index_server.url) as client:
            return [len(p) async for p in client.pages({"type": "File", "fields": "id"}, page=2)]

    sizes = asyncio.run(pages())
    assert sum(sizes) == sum(len(s.files) for s in samples) and max(sizes) == 2


def test_nothing_listening_is_unreachable_after_the_retries() -> None:
    told: list[str] = []
    url = f"http://127.0.0.1:{free_port()}"
    with (
        IndexClient(url, retry=QUICK, on_retry=told.append) as client,
        pytest.raises(IndexUnreachable, match="after 2 retries: .*ConnectError"),
    ):
        client.search({})
    assert len(told) == 2


@pytest.fixture
def tls_index(tmp_path: Path):
    server = IndexServer(tmp_path / "tls-master", tls=True).start()
    yield server
    server.stop()


def test_certificates_are_verified_by_default(tls_index: IndexServer) -> None:
    began = time.monotonic()
    with (
        IndexClient(tls_index.url, retry=Backoff(retries=3, first=1.0)) as client,
        pytest.raises(IndexUnreachable) as untrusted,
    ):
        client.readiness()
        assert untrusted.value.untrusted
        with pytest.raises(IndexUnreachable) as untrusted:
            client.search({})
    assert untrusted.value.untrusted
    assert time.monotonic() - began < 1.0  # an untrusted certificate is not retried
    with IndexClient(tls_index.url, ca=tls_index.ca) as client:
        assert client.readiness()[0] == 200
        assert client.search({"limit": 0})["response"]["numFound"] == 0


def test_supervisor_health_checks_verify_the_certificate(tls_index: IndexServer) -> None:
    spec = ProcessSpec("master", [], tls_index.state_dir, health_url=tls_index.url + "/livez")
    trusted = Supervisor([spec], tls_index.state_dir / "logs", verify=tls_verify(tls_index.ca))
    untrusting = Supervisor([spec], tls_index.state_dir / "logs")
    try:
        for supervisor in (trusted, untrusting):
            supervisor.children[0].proc = tls_index.proc  # the running index stands in
        assert trusted._healthy(trusted.children[0])
        assert not untrusting._healthy(untrusting.children[0])
    finally:
        for supervisor in (trusted, untrusting):
            supervisor.children[0].proc = None  # the fixture stops the index
            supervisor.stop_all()
