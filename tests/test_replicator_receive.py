"""The replicator's libcurl receiver against a real data node (over TLS, and cut off by a
network fault): whole files, resumed files, refused requests, broken transfers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from esgf_ha.replicator.errors import ReceiveError
from esgf_ha.replicator.receive import FLUSH_BYTES, Receiver, Response
from tests.faults import Proxy
from tests.servers import DataServer

SIZE = 3 * FLUSH_BYTES + 12_345  # not a whole number of flushes: the tail must land too


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataServer, bytes]]:
    base = tmp_path_factory.mktemp("receive")
    data = os.urandom(SIZE)
    (base / "root").mkdir()
    (base / "root" / "f.nc").write_bytes(data)
    server = DataServer(base / "node", {"r": base / "root"}, tls=True).start()
    try:
        yield server, data
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_node(node: tuple[DataServer, bytes]) -> Iterator[DataServer]:
    """The same files over plain HTTP, for a proxy that cuts connections to read."""
    server = DataServer(node[0].state_dir.parent / "plain", node[0].roots).start()
    try:
        yield server
    finally:
        server.stop()


def get(receiver: Receiver, url: str, part: Path, offset: int = 0) -> tuple[Response, int]:
    hasher = hashlib.sha256()
    if offset:
        hasher.update(part.read_bytes()[:offset])
    seen: list[int] = []
    r = receiver.receive(url, part, offset=offset, hasher=hasher, new_hasher=hashlib.sha256,
                         progress=seen.append)  # fmt: skip
    return r, sum(seen)


def test_whole_and_resumed_files_arrive_hashed_over_tls(
    node: tuple[DataServer, bytes], tmp_path: Path
) -> None:
    server, data = node
    url = server.url + "/thredds/fileServer/r/f.nc"
    receiver = Receiver(ca_file=server.ca)
    try:
        part = tmp_path / "f.nc.part"
        r, progressed = get(receiver, url, part)
        assert (r.status, r.accepted, r.received, progressed) == (200, True, SIZE, SIZE)
        assert part.read_bytes() == data
        assert r.hasher.hexdigest() == hashlib.sha256(data).hexdigest()

        offset = FLUSH_BYTES + 7
        part.write_bytes(data[:offset])
        r, progressed = get(receiver, url, part, offset)
        assert (r.status, r.accepted, r.received) == (206, True, SIZE - offset)
        assert part.read_bytes() == data
        assert r.hasher.hexdigest() == hashlib.sha256(data).hexdigest()

        # a part file already whole: the node answers 416, and nothing is appended
        r, _ = get(receiver, url, part, SIZE)
        assert (r.status, r.accepted) == (416, False) and part.read_bytes() == data

        missing = tmp_path / "missing.part"
        r, _ = get(receiver, server.url + "/thredds/fileServer/r/none.nc", missing)
        assert (r.status, r.accepted) == (404, False) and not missing.exists()
    finally:
        receiver.close()


def test_unknown_certificate_authority_is_refused(
    node: tuple[DataServer, bytes], tmp_path: Path
) -> None:
    server, _ = node
    receiver = Receiver()  # the system's CAs, which did not sign the node's certificate
    try:
        with pytest.raises(ReceiveError, match="curl error"):
            get(receiver, server.url + "/thredds/fileServer/r/f.nc", tmp_path / "f.part")
        assert not (tmp_path / "f.part").exists()
    finally:
        receiver.close()


def test_a_cut_transfer_keeps_every_byte_that_arrived(
    node: tuple[DataServer, bytes], plain_node: DataServer, tmp_path: Path
) -> None:
    data = node[1]
    port = int(plain_node.url.rsplit(":", 1)[1])
    cut = FLUSH_BYTES + FLUSH_BYTES // 2  # mid-way through the second flush
    receiver = Receiver()
    try:
        with Proxy(("127.0.0.1", port), cut_after=cut) as dying:
            url = f"{dying.url}/thredds/fileServer/r/f.nc"
            part = tmp_path / "f.nc.part"
            with pytest.raises(ReceiveError) as cut_off:
                get(receiver, url, part)
        assert part.exists(), cut_off.value
        kept = part.read_bytes()
        # the response head took a little of the cut; every body byte that came was written
        assert FLUSH_BYTES < len(kept) < cut and kept == data[: len(kept)]
    finally:
        receiver.close()
