"""Hostile input on the read path, against real services on loopback: every bad parameter is a
400 (never a 500), every search stops at its time limit, OPeNDAP answers are bounded in memory,
and idle or slow connections are closed without locking out real clients (issue 12)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import httpx
import netCDF4
import numpy as np
import pytest

from esgf_ha.balancer.server import start_dns
from esgf_ha.index import deadline
from esgf_ha.index.errors import SearchTimeout
from esgf_ha.index.store import Store
from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.datanode_data import write_dataset
from tests.servers import DataServer, IndexServer, logged

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 40
SEARCH_TIMEOUT = 0.5
LIMITS = ["--header-timeout", str(HEADER_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS)]
THIRTY_DIGITS = "9" * 30
# a 64 MB variable: big enough that building its answer in memory shows in the peak RSS
BIG_SHAPE = (400, 200, 200)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    server = IndexServer(
        tmp_path_factory.mktemp("hostile") / "index",
        extra_args=["--search-timeout", str(SEARCH_TIMEOUT), *LIMITS],
    ).start()
    try:
        r = server.publish(as_batch(cmip6_samples(12)))
        assert r.status_code == 200, r.text
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataServer, str, str]]:
    base = tmp_path_factory.mktemp("hostile-data")
    root = base / "data"
    small = write_dataset(root, seed=7).rels[0]
    big = root / "big" / "big.nc"
    big.parent.mkdir(parents=True)
    with netCDF4.Dataset(big, "w", format="NETCDF4_CLASSIC") as nc:
        for name, size in zip(("time", "lat", "lon"), BIG_SHAPE, strict=True):
            nc.createDimension(name, size)
        v = nc.createVariable("v", "f4", ("time", "lat", "lon"))
        v[:] = np.arange(np.prod(BIG_SHAPE), dtype="f4").reshape(BIG_SHAPE)
    server = DataServer(base / "node", {"esg_dataroot": root}, extra_args=LIMITS).start()
    try:
        yield server, small, "big/big.nc"
    finally:
        server.stop()


# -- every parameter, every endpoint: 400 with a message, never a 500 ----------------------

BAD_DATES = [
    "NOW+10000YEARS",
    "NOW-10000YEARS",
    f"NOW+{THIRTY_DIGITS}DAYS",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "NOW" + "+1DAY" * 100,
]
BAD_PARAMS = [
    *[(name, value) for name in ("start", "end", "from", "to") for value in BAD_DATES],
    ("offset", THIRTY_DIGITS),
    ("offset", "2147483648"),
    ("limit", THIRTY_DIGITS),
    ("limit", "-" + THIRTY_DIGITS),
    ("offset", "1" * 5000),
]
BAD_QUERIES = [
    "datetime_start:[0001-01-01T00:00:00+01:00 TO *]",
    "datetime_stop:[* TO 9999-12-31T23:59:59-01:00]",
    "_timestamp:[NOW+10000YEARS TO *]",
    " OR ".join(f"w{i}" for i in range(1100)),
    " OR ".join(f"*w{i}*" for i in range(20)),
    "*" + "ab" * 200 + "*",
    "*a" * 20,
]


# equality with a value a field cannot hold matches nothing, as in Solr: 200, no hits
ODD_QUERIES = [
    f"_timestamp:NOW-{THIRTY_DIGITS}SECONDS",
    'datetime_start:"0001-01-01T00:00:00+01:00"',
    f"size:{THIRTY_DIGITS}",
    "latest:maybe",
]


def _search_endpoints(index: IndexServer) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/esg-search/search", {"format": "application/solr+json"}),
        ("/esg-search/search", {"format": "application/solr+xml"}),
        ("/esg-search/wget", {}),
    ]


@pytest.mark.parametrize(("name", "value"), BAD_PARAMS + [("query", q) for q in BAD_QUERIES])
def test_bad_search_input_is_a_400_everywhere(index: IndexServer, name: str, value: str) -> None:
    with index.client() as c:
        for path, extra in _search_endpoints(index):
            r = c.get(path, params={**extra, name: value})
            assert r.status_code == 400, (path, name, value[:60], r.status_code, r.text[:300])
            assert "internal error" not in r.text and len(r.text) > 40, r.text[:300]


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_values_a_field_cannot_hold_match_nothing(index: IndexServer, query: str) -> None:
    with index.client() as c:
        for path, extra in _search_endpoints(index):
            r = c.get(path, params={**extra, "query": query})
            assert r.status_code == 200, (path, query, r.status_code, r.text[:300])


@pytest.mark.parametrize(
    "params",
    [
        {"since": THIRTY_DIGITS},
        {"limit": THIRTY_DIGITS},
        {"wait": "nan"},
        {"wait": "1e309"},
        {"since": "-1"},
        {"encoding": "gzip"},
    ],
)
def test_bad_change_feed_input_is_a_400(index: IndexServer, params: dict[str, str]) -> None:
    with index.client() as c:
        r = c.get("/api/v1/changes", params=params, headers=index.auth("esgf:replicate"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]


@pytest.mark.parametrize(
    ("suffix", "query", "status"),
    [
        (".dods", f"tas[{THIRTY_DIGITS}]", 400),
        (".dods", f"tas[0:1:{THIRTY_DIGITS}]", 400),
        (".dods", "tas[-1:2]", 400),
        (".dods", "tas[0:1],tas[1:2]", 400),
        (".dods", ",".join(["tas"] * 2000), 400),
        (".dds", ",".join(["nope"] * 2000), 400),
        (".dods", "tas[0:0:0]", 400),
        (".dods", "tas&tas>1", 400),
    ],
)
def test_bad_opendap_input_is_a_400(
    data: tuple[DataServer, str, str], suffix: str, query: str, status: int
) -> None:
    server, small, _ = data
    with server.client() as c:
        r = c.get(f"/thredds/dodsC/esg_dataroot/{small}{suffix}?{query}")
    assert r.status_code == status, r.text[:300]


@pytest.mark.parametrize(
    "header",
    [
        f"bytes={THIRTY_DIGITS}-",
        f"bytes=-{THIRTY_DIGITS}0",
        f"bytes=0-{THIRTY_DIGITS}",
        "bytes=" + "0" * 5000 + "-",
    ],
)
def test_huge_range_headers_are_answered(data: tuple[DataServer, str, str], header: str) -> None:
    server, small, _ = data
    with server.client() as c:
        r = c.get(f"/thredds/fileServer/esg_dataroot/{small}", headers={"Range": header})
    assert r.status_code in (200, 206, 416), r.text[:300]


# -- the search time limit ------------------------------------------------------------------


@pytest.fixture
def wordy_index(tmp_path: Path) -> Iterator[IndexServer]:
    """A fresh index whose records hold long prose: its first wildcard text search has
    hundreds of thousands of distinct words to index (seconds of work)."""
    server = IndexServer(
        tmp_path / "wordy", extra_args=["--search-timeout", str(TIGHT_TIMEOUT)]
    ).start()
    rng = np.random.default_rng(5)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    samples = cmip6_samples(10)
    for sample in samples:
        # 7000 words of 9 characters stay under the 64 KiB cap on one value (max_value_chars)
        words = ["".join(rng.choice(letters, 8)) for _ in range(7000)]
        sample.dataset["variable_long_name"] = " ".join(words)
        for i in range(5):
            sample.dataset[f"notes_{i}"] = " ".join(words[i::5] + words[: i * 100])
    try:
        r = server.publish(as_batch(samples))
        assert r.status_code == 200, r.text
        yield server
    finally:
        server.stop()


TIGHT_TIMEOUT = 0.1


def test_a_search_stops_at_its_time_limit(wordy_index: IndexServer) -> None:
    """A wildcard text search that must first index ~500k words stops at its limit with 503,
    a Solr-shaped error in the requested format and Retry-After; the indexing done is kept,
    so text searches complete after a few tries; other searches are answered meanwhile."""
    answers = []
    with wordy_index.client() as c:
        for fmt in ("application/solr+json", "application/solr+xml"):
            began = time.monotonic()
            r = c.get("/esg-search/search", params={"query": "*qz*", "format": fmt})
            elapsed = time.monotonic() - began
            assert r.status_code == 503, r.text[:300]
            assert int(r.headers["Retry-After"]) > 0
            assert elapsed < TIGHT_TIMEOUT + 3, elapsed
            if fmt.endswith("json"):
                assert "time limit" in r.json()["error"]["msg"]
                assert r.json()["error"]["code"] == 503
            else:
                assert '<lst name="error">' in r.text and "time limit" in r.text
        r = c.get("/esg-search/wget", params={"query": "*qz*"})
        assert r.status_code == 503 and "time limit" in r.text
        assert r.headers["Retry-After"]
        ok = c.get("/esg-search/search", params={"format": "application/solr+json"})
        assert ok.status_code == 200 and ok.json()["response"]["numFound"] > 0
        # a plain word needs the same word index but costs only lookups once it is built:
        # it completes only if each stopped search kept the indexing it had done
        for _ in range(400):
            r = c.get("/esg-search/search", params={"query": "qzqzqz", "format": fmt})
            answers.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code == 503
    assert answers[-1] == 200, f"still 503 after {len(answers)} tries"


def test_sqlite_statements_stop_at_the_deadline(tmp_path: Path) -> None:
    """A statement already running inside SQLite is interrupted by the progress handler."""
    store = Store(tmp_path / "index.sqlite3")
    try:
        endless = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM (SELECT x FROM c LIMIT 1000000000)"
        )
        began = time.monotonic()
        with pytest.raises(SearchTimeout), deadline.limit(0.2):
            store.reader().execute(endless).fetchone()
        assert time.monotonic() - began < 2
        # the connection is usable again, without a limit
        assert store.reader().execute("SELECT 1").fetchone() == (1,)
    finally:
        store.close()


# -- OPeNDAP memory -------------------------------------------------------------------------


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_opendap_answers_are_bounded_in_memory(data: tuple[DataServer, str, str]) -> None:
    """A projection repeating a 64 MB variable, and the whole variable alone: the peak memory
    of the node grows by much less than the answer (it is streamed, and sent once)."""
    server, _, big = data
    assert server.proc is not None
    size = int(np.prod(BIG_SHAPE)) * 4
    with server.client() as c:
        c.get(f"/thredds/dodsC/esg_dataroot/{big}.dds")
        before = _peak_rss(server.proc.pid)
        with c.stream("GET", f"/thredds/dodsC/esg_dataroot/{big}.dods?v") as r:
            assert r.status_code == 200
            single = sum(len(b) for b in r.iter_bytes())
        with c.stream("GET", f"/thredds/dodsC/esg_dataroot/{big}.dods?" + ",".join(["v"] * 6)) as r:
            assert r.status_code == 200
            repeated = sum(len(b) for b in r.iter_bytes())
        dds = c.get(f"/thredds/dodsC/esg_dataroot/{big}.dds?" + ",".join(["v"] * 1000))
    grown = _peak_rss(server.proc.pid) - before
    assert single > size and repeated == single
    assert dds.status_code == 200 and dds.text.count("Float32 v") == 1
    assert grown < size, f"peak RSS grew by {grown >> 20} MiB for a {size >> 20} MiB answer"


def test_opendap_stream_has_the_right_bytes(data: tuple[DataServer, str, str]) -> None:
    """The streamed answer decodes to the variable's values, hyperslab included."""
    server, _, big = data
    with server.client() as c:
        body = c.get(f"/thredds/dodsC/esg_dataroot/{big}.dods?v[3:2:9][0:199][5]").content
    payload = body.split(b"\nData:\n", 1)[1]
    count = int.from_bytes(payload[:4], "big")
    values = np.frombuffer(payload[8:], dtype=">f4")
    expected = np.arange(np.prod(BIG_SHAPE), dtype="f4").reshape(BIG_SHAPE)[3:10:2, :, 5]
    assert count == expected.size == len(values)
    assert np.array_equal(values, expected.ravel())


# -- idle and slow connections --------------------------------------------------------------


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed this connection (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)


@pytest.fixture(params=["index", "data"])
def service(
    request: pytest.FixtureRequest, index: IndexServer, data: tuple[DataServer, str, str]
) -> tuple[str, str]:
    """A service's URL and a real request to make of it."""
    if request.param == "index":
        return index.url, "/esg-search/search?project=CMIP6&format=application/solr%2Bjson"
    server, small, _ = data
    return server.url, f"/thredds/fileServer/esg_dataroot/{small}"


def test_idle_and_slow_connections_are_closed(service: tuple[str, str]) -> None:
    """Twice the connection cap of idle and slow-loris connections: a real request is still
    answered while they are open, and all of them are closed once the header timeout ends."""
    service_url, probe = service
    address = _address(service_url)
    idle = [socket.create_connection(address, timeout=5) for _ in range(MAX_CONNECTIONS)]
    slow = [socket.create_connection(address, timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        began = time.monotonic()
        for s in slow:
            s.sendall(b"GET /livez HTTP/1.1\r\n")
        with httpx.Client(base_url=service_url, timeout=10) as c:
            assert c.get(probe).status_code == 200
        assert time.monotonic() - began < HEADER_TIMEOUT + 2
        # the slow ones keep sending, a header line at a time, slower than the timeout allows
        deadline_at = time.monotonic() + HEADER_TIMEOUT + 4
        while time.monotonic() < deadline_at:
            for s in slow:
                with contextlib.suppress(OSError):
                    s.sendall(b"X-Slow: 1\r\n")
            if all(_closed(s) for s in idle + slow):
                break
            time.sleep(0.25)
        still_open = [s for s in idle + slow if not _closed(s)]
        assert not still_open, f"{len(still_open)} connections still open"
    finally:
        for s in idle + slow:
            s.close()


def test_a_kept_alive_connection_that_stalls_is_closed(service: tuple[str, str]) -> None:
    """After one answered request, a second request sent halfway is closed at the timeout."""
    host, port = _address(service[0])
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"GET /livez HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        answer = b""
        while b'"ok":true' not in answer:
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: ")
        began = time.monotonic()
        s.settimeout(HEADER_TIMEOUT + 5)
        assert s.recv(65536) == b""
        assert time.monotonic() - began < HEADER_TIMEOUT + 3


def test_dns_tcp_connections_are_capped_oldest_first() -> None:
    """Idle TCP connections to our DNS server beyond its cap close the oldest ones, and a real
    TCP query is still answered while they are open."""
    loop = asyncio.new_event_loop()
    started: list[tuple[int, object, object]] = []
    ready = threading.Event()

    async def run() -> None:
        started.append(
            await start_dns(
                "127.0.0.1", 0, lambda q, _t: dns.message.make_response(q), max_tcp_clients=8
            )
        )
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(run(), loop).result(10)
    assert ready.wait(10)
    port, udp, tcp = started[0]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        query = dns.message.make_query("esgf.example.org", "A")
        answer = dns.query.tcp(query, "127.0.0.1", port=port, timeout=5)
        assert answer.id == query.id
        time.sleep(0.5)
        closed = [s for s in idle if _closed(s)]
        assert len(closed) >= len(idle) - 8
        assert all(_closed(s) for s in idle[:8]), "the oldest connections were not the ones shed"
    finally:
        for s in idle:
            s.close()

        async def stop() -> None:
            # the server's ends of the closed idle connections close once their handlers
            # see EOF: let them run, or the loop closes under open sockets
            await asyncio.sleep(0.2)
            udp.close()  # type: ignore[attr-defined]
            tcp.close()  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_stalled_request_body_is_closed(index: IndexServer) -> None:
    """A POST whose body stops arriving is closed once it has stalled for the header timeout,
    and a body that keeps arriving is read whole."""
    host, port = _address(index.url)
    head = (
        f"POST /esg-search/wget HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=HEADER_TIMEOUT + 5) as s:
        s.sendall(head.encode() + b"project=CMIP6")
        began = time.monotonic()
        assert s.recv(65536) == b""
        assert time.monotonic() - began < HEADER_TIMEOUT + 3
    body = b"project=CMIP6&limit=1"
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(head.replace("1000", str(len(body))).encode())
        for i in range(len(body)):
            time.sleep(HEADER_TIMEOUT * 2 / len(body))
            s.sendall(body[i : i + 1])
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    # the stalled body is the client's fault: logged as information, never as a server error
    assert logged(index.log_path, msg="client disconnected")
    assert logged(index.log_path, level="error") == []
