"""Receive one HTTP(S) response body into a `.part` file with libcurl, hashing every byte as it
is written.

libcurl reads the socket and decrypts TLS in native code with the GIL released; Python only
sees each decrypted buffer, once, to write it and feed the hash (both of which release the GIL
again). Reading TLS records one at a time in Python was the measured bottleneck: about a
quarter of `curl --parallel` on the same files.

One libcurl handle per worker thread, kept between files, so a worker reuses its
keep-alive connection and TLS session to a data node instead of a handshake per file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import certifi
import pycurl

from esgf_ha.replicator.errors import ReceiveError

CONNECT_TIMEOUT_SECONDS = 5
STALL_SECONDS = 30  # a source that sends nothing for this long has failed
BUFFER_BYTES = 512 * 1024
# libcurl hands over one TLS record (16 KiB) per call; writing and hashing each one cost a
# system call and two GIL hand-overs per 16 KiB, which eight transfers fought over
FLUSH_BYTES = 1 << 20
MAX_REDIRECTS = 5


@dataclass
class Response:
    status: int
    accepted: bool  # the body went to the part file (200, or 206 from the offset asked)
    received: int  # body bytes written to the part file
    hasher: Any  # the hash over the whole part file, as far as it was written


@dataclass
class _Body:
    """What the callbacks know about the response being received."""

    part: Path
    offset: int
    new_hasher: Callable[[], Any]
    hasher: Any
    progress: Callable[[int], None]
    status: int = 0
    content_range_start: int | None = None
    out: BinaryIO | None = None
    discard: bool = False
    refused: str | None = None
    received: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    pending: bytearray = field(default_factory=bytearray)

    def header(self, line: bytes) -> None:
        text = line.decode("latin-1").strip()
        if text.startswith("HTTP/"):
            # each response of a redirect chain starts afresh; the last one carries the body
            parts = text.split()
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.headers = {}
            self.content_range_start = None
        elif ":" in text:
            name, _, value = text.partition(":")
            self.headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "content-range":
                self.content_range_start = _range_start(value)

    def open(self) -> None:
        """Decide, from the final status, what the body is for."""
        if self.status == 206 and self.offset and self.content_range_start == self.offset:
            self.out = open(self.part, "ab")  # noqa: SIM115 - closed by receive()
        elif self.status == 200:
            self.hasher = self.new_hasher()  # the server ignored the Range: start over
            self.out = open(self.part, "wb")  # noqa: SIM115 - closed by receive()
        elif self.status == 416:
            self.discard = True  # an error page; the caller decides from the status
        else:
            self.refused = f"HTTP {self.status}"

    def write(self, chunk: bytes) -> int | None:
        if self.out is None and not self.discard:
            if self.refused is None:
                self.open()
            if self.refused is not None:
                return 0  # anything but len(chunk) makes libcurl stop the transfer
        if self.discard:
            return None
        self.pending += chunk
        if len(self.pending) >= FLUSH_BYTES:
            self.flush()
        return None

    def flush(self) -> None:
        """Write and hash what is pending (at the end too, even of a cut transfer: the part
        file keeps every byte received)."""
        if self.out is None or not self.pending:
            return
        self.out.write(self.pending)
        self.hasher.update(self.pending)
        self.received += len(self.pending)
        self.progress(len(self.pending))
        self.pending.clear()


class Receiver:
    """Blocking GETs into part files; one instance shared by the fetch worker threads."""

    def __init__(self, *, ca_file: Path | None = None, token: str | None = None) -> None:
        self.ca_file = (
            str(ca_file) if ca_file else os.environ.get("SSL_CERT_FILE") or certifi.where()
        )
        self.token = token
        self._local = threading.local()
        self._handles: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def _handle(self) -> pycurl.Curl:
        handle: pycurl.Curl | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = pycurl.Curl()
            self._local.handle = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def receive(
        self,
        url: str,
        part: Path,
        *,
        offset: int,
        hasher: Any,
        new_hasher: Callable[[], Any],
        progress: Callable[[int], None],
    ) -> Response:
        """GET `url` (from byte `offset` of `part` when it is not 0) and write the body to `part`.

        Raises ReceiveError for a transport failure (what arrived before it stays in `part`);
        any other status is returned, not accepted and with nothing written, for the caller
        to judge.
        """
        body = _Body(part, offset, new_hasher, hasher, progress)
        c = self._handle()
        c.reset()
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.FOLLOWLOCATION, True)
        c.setopt(pycurl.MAXREDIRS, MAX_REDIRECTS)
        c.setopt(pycurl.NOSIGNAL, True)  # required in threads: no SIGALRM for timeouts
        c.setopt(pycurl.CONNECTTIMEOUT, CONNECT_TIMEOUT_SECONDS)
        c.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        c.setopt(pycurl.LOW_SPEED_TIME, STALL_SECONDS)
        c.setopt(pycurl.BUFFERSIZE, BUFFER_BYTES)
        c.setopt(pycurl.CAINFO, self.ca_file)
        c.setopt(pycurl.HTTP_CONTENT_DECODING, False)  # the checksum is over the stored bytes
        headers = []
        if self.token:
            headers.append(f"Authorization: Bearer {self.token}")
        if offset:
            headers.append(f"Range: bytes={offset}-")
        c.setopt(pycurl.HTTPHEADER, headers)
        c.setopt(pycurl.HEADERFUNCTION, body.header)
        c.setopt(pycurl.WRITEFUNCTION, body.write)
        try:
            c.perform()
        except pycurl.error as exc:
            if body.refused is None:
                code, message = exc.args if len(exc.args) == 2 else (0, str(exc))
                raise ReceiveError(f"curl error {code}: {message}") from None
        finally:
            if body.out is not None:
                body.flush()
                body.out.close()
            if self.token:
                c.setopt(pycurl.HTTPHEADER, [])  # do not keep the token in an idle handle
        if body.out is None and body.refused is None and not body.discard:
            body.open()  # a response without a body: an empty file is still a file
            if body.out is not None:
                body.out.close()
        return Response(body.status, body.out is not None, body.received, body.hasher)

    def close(self) -> None:
        with self._lock:
            for handle in self._handles:
                handle.close()
            self._handles.clear()


def _range_start(value: str) -> int | None:
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None
