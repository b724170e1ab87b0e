"""Sending one file: byte ranges, validators, digests, and the body itself — with sendfile
on plain HTTP (no copy through Python), large reads otherwise.

Uvicorn does not implement the ASGI `http.response.zerocopy` extension, so the protocol we
run (`SendfileProtocol`) puts itself into the request scope; the response tells h11 that
`length` body bytes were sent (data passthrough with a placeholder, h11's documented way to
use sendfile), corks the headers with the body, and calls `os.sendfile` once from the event
loop: a range that fits the socket buffer is out then. The rest of a larger body goes from a
worker thread (`loop.sendfile` from the event loop when all threads are busy), with little
unsent data queued on the socket (`NOTSENT_LOWAT`). Threads let the kernel copies of parallel
downloads use every core."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import select
import socket
import threading
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import anyio
import h11
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from esgf_ha.common.server import PeerCertProtocol
from esgf_ha.datanode.errors import RangeNotSatisfiable

log = logging.getLogger("esgf_ha.datanode.files")
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
MAX_RANGE_HEADER = 1024


class SendfileProtocol(PeerCertProtocol):
    """Our HTTP/1.1 protocol, reachable from the request scope for sendfile."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.app_state = {**self.app_state, "sendfile_protocol": self}


@dataclass(frozen=True)
class FileStat:
    path: Path
    size: int
    mtime: float
    etag: str

    @classmethod
    def of(cls, path: Path) -> FileStat:
        st = path.stat()
        # size and nanosecond mtime: changes whenever the bytes could have changed
        return cls(path, st.st_size, st.st_mtime, f'"{st.st_mtime_ns:x}-{st.st_size:x}"')

    @property
    def last_modified(self) -> str:
        return formatdate(self.mtime, usegmt=True)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range `[start, end]` a Range header asks for, None for the whole file.

    Headers in another unit and multi-range requests are ignored (the whole file is an
    allowed answer, and it keeps a request from asking for thousands of parts)."""
    if header is None:
        return None
    if len(header) > MAX_RANGE_HEADER:
        raise RangeNotSatisfiable("Range header too long", size)
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    m = _RANGE.match(spec)
    if not m or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiable(f"malformed byte range {spec.strip()[:80]!r}", size)
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable("empty suffix range", size)
        return max(0, size - n), size - 1
    start = int(first)
    if last and int(last) < start:
        raise RangeNotSatisfiable(f"inverted byte range {start}-{last}", size)
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, the file has {size} bytes", size)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def digest_headers(checksum: str | None, checksum_type: str | None) -> dict[str, str]:
    """RFC 3230 `Digest` and RFC 9530 `Repr-Digest` from a published SHA-256."""
    if not checksum or (checksum_type or "").upper() != "SHA256":
        return {}
    try:
        raw = bytes.fromhex(checksum)
    except ValueError:
        return {}
    if len(raw) != 32:
        return {}
    b64 = base64.b64encode(raw).decode()
    return {"Digest": f"SHA-256={b64}", "Repr-Digest": f"sha-256=:{b64}:"}


def not_modified(headers: Any, stat: FileStat) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or stat.etag in tags
    ims = headers.get("if-modified-since")
    if ims:
        try:
            return int(stat.mtime) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
    return False


def if_range_holds(headers: Any, stat: FileStat) -> bool:
    value = headers.get("if-range")
    return value is None or value.strip() in (stat.etag, stat.last_modified)


class SendfileThreads:
    """How many transfers may run `os.sendfile` in worker threads at once (made on first use:
    a limiter belongs to the running event loop)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._limiter: anyio.CapacityLimiter | None = None

    def free(self) -> anyio.CapacityLimiter | None:
        if self.total <= 0:
            return None
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.total)
        return self._limiter if self._limiter.available_tokens else None


def _blocking_sendfile(
    sock_fd: int, file_fd: int, offset: int, count: int, abandoned: threading.Event
) -> int:
    """sendfile on a non-blocking socket from a worker thread, waiting for room with poll.

    The thread owns both descriptors (duplicates) and closes them: once the request is
    abandoned (the server stopped waiting for it) the caller no longer knows when this ends,
    and it gives up within a second of `abandoned` being set."""
    try:
        poller = select.poll()
        poller.register(sock_fd, select.POLLOUT)
        sent = 0
        while sent < count and not abandoned.is_set():
            try:
                n = os.sendfile(sock_fd, file_fd, offset + sent, count - sent)
            except BlockingIOError:
                for _ in range(60):
                    if poller.poll(1000) or abandoned.is_set():
                        break
                else:
                    raise TimeoutError("the client stopped reading") from None
                continue
            if n == 0:
                break
            sent += n
        return sent
    finally:
        os.close(sock_fd)
        os.close(file_fd)


# Unsent bytes a socket may hold while a large body goes out. Without a bound, sendfile fills
# the whole send buffer (4 MiB) and the kernel transmits the backlog from its pacing timers
# in softirq context (BBR paces), which a loaded machine runs late: 32 streams moved half
# of nginx's rate. Kept short, the data leaves in the sending thread's own system call.
NOTSENT_LOWAT = 256 << 10
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux's number


async def _drop(transport: Any) -> None:
    """Close a connection whose response cannot be finished, and let the server see the loss
    before the handler returns: otherwise it logs an unfinished response as its own error."""
    transport.abort()
    await asyncio.sleep(0)


def _tcp_option(transport: Any, option: int, value: int) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):  # the connection is gone: the transfer finds out
        sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _sendfile_now(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    """As much of the span as the non-blocking socket takes right now (0 if none)."""
    try:
        return os.sendfile(sock_fd, file_fd, offset, count)
    except BlockingIOError:
        return 0


class _Span:
    """Stands for `n` body bytes that sendfile writes behind h11's back."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class FileBody(Response):
    """Headers already decided by the caller; sends `length` bytes from `start`."""

    def __init__(
        self,
        stat: FileStat,
        start: int,
        length: int,
        *,
        status_code: int,
        headers: dict[str, str],
        send_body: bool,
        sendfile_min: int,
        chunk: int,
        threads: SendfileThreads | None = None,
        on_sent: Any = None,
    ) -> None:
        super().__init__(None, status_code=status_code, headers=headers)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.raw_headers.append((b"content-length", str(length).encode()))
        self.stat = stat
        self.start = start
        self.length = length
        self.send_body = send_body
        self.sendfile_min = sendfile_min
        self.chunk = chunk
        self.threads = threads
        self.on_sent = on_sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fh = None
        if self.send_body and self.length:
            # opened before the status goes out: a file that vanished is still a clean 404.
            # Opened on the event loop: the handler has just stat-ed the same path there, and
            # a thread hop would cost more than the open (it shows in small-range latency)
            try:
                fh = open(self.stat.path, "rb")  # noqa: SIM115 - closed once the body is out
            except OSError:
                gone = JSONResponse(
                    {"ok": False, "status": 404, "error": "no such file"}, status_code=404
                )
                await gone(scope, receive, send)
                return
        protocol: Any = (scope.get("state") or {}).get("sendfile_protocol")
        zero_copy = (
            fh is not None
            and protocol is not None
            and self.length >= self.sendfile_min
            and protocol.transport.get_extra_info("sslcontext") is None
        )
        if zero_copy:
            # headers and the first body bytes share packets (nginx's tcp_nopush): with
            # TCP_NODELAY the headers would leave alone and wake the client once more
            _tcp_option(protocol.transport, socket.TCP_CORK, 1)
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if fh is None:
            await send({"type": "http.response.body", "body": b""})
            return
        sent = 0
        try:
            if zero_copy:
                sent = await self._sendfile(protocol, fh, send)
            else:
                sent = await self._chunks_until_disconnect(receive, send, fh)
        finally:
            fh.close()
            if self.on_sent is not None:
                self.on_sent(sent)

    async def _sendfile(self, protocol: Any, fh: Any, send: Send) -> int:
        protocol.conn.send_with_data_passthrough(h11.Data(data=_Span(self.length)))  # type: ignore[arg-type]
        transport = protocol.transport
        sock = transport.get_extra_info("socket")
        sent = 0
        try:
            try:
                if sock is not None and not transport.get_write_buffer_size():
                    # what fits in the socket buffer goes now, from the event loop: a 1 MiB
                    # range usually leaves in this one call, without a thread hop
                    sent = _sendfile_now(sock.fileno(), fh.fileno(), self.start, self.length)
            finally:
                _tcp_option(transport, socket.TCP_CORK, 0)
            if sent < self.length:
                _tcp_option(transport, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
                try:
                    sent += await self._send_rest(transport, sock, fh, sent)
                finally:
                    # 0 is the system's default again: the next small range on this
                    # connection fills the buffer in one call
                    _tcp_option(transport, _TCP_NOTSENT_LOWAT, 0)
        except (ConnectionError, OSError, RuntimeError) as exc:
            # the client went away mid-transfer: nothing to clean up but the connection
            log.info("transfer aborted", extra={"path": str(self.stat.path), "error": str(exc)})
            await _drop(protocol.transport)
            return 0
        if sent != self.length:
            # the file shrank under us: the framing is broken
            log.error("file shrank during a transfer", extra={"path": str(self.stat.path)})
            await _drop(protocol.transport)
            return int(sent)
        # the h11 writer already counted the bytes: end the message normally
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return int(sent)

    async def _send_rest(self, transport: Any, sock: Any, fh: Any, done: int) -> int:
        """The body after its first `done` bytes: from a worker thread, or from the event
        loop when the headers are still queued or every sendfile thread is busy."""
        offset, count = self.start + done, self.length - done
        limiter = self.threads.free() if self.threads is not None else None
        if sock is None or transport.get_write_buffer_size() or limiter is None:
            loop = asyncio.get_running_loop()
            return int(await loop.sendfile(transport, fh, offset, count))
        # a thread per transfer: the kernel copies of several downloads run on several
        # cores, and the event loop stays free for other requests
        reading = transport.is_reading()
        transport.pause_reading()
        # our own descriptors for the socket and the file: should the transport or the file
        # be closed meanwhile, the numbers cannot be reused under the thread
        fd, file_fd = os.dup(sock.fileno()), os.dup(fh.fileno())
        abandoned = threading.Event()
        try:
            return int(
                await anyio.to_thread.run_sync(
                    _blocking_sendfile,
                    fd,
                    file_fd,
                    offset,
                    count,
                    abandoned,
                    limiter=limiter,
                    # a stopping server cancels requests still running after its grace
                    # period: the thread is told and closes its descriptors itself
                    abandon_on_cancel=True,
                )
            )
        except BaseException:
            abandoned.set()
            raise
        finally:
            if reading and not transport.is_closing():
                transport.resume_reading()

    async def _chunks_until_disconnect(self, receive: Receive, send: Send, fh: Any) -> int:
        # uvicorn drops what is sent after the client left, so without this watcher a
        # vanished client would still have the whole file read for it
        sent = [0]
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await self._chunks(send, fh, sent)
            tg.cancel_scope.cancel()
        return sent[0]

    async def _chunks(self, send: Send, fh: Any, sent: list[int]) -> None:
        fd = fh.fileno()
        offset, end = self.start, self.start + self.length
        while offset < end:
            n = min(self.chunk, end - offset)
            data = await anyio.to_thread.run_sync(os.pread, fd, n, offset)
            if not data:
                break  # the file shrank: the connection is closed by the short body
            offset += len(data)
            sent[0] += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": offset < end})
