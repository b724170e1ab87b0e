"""The DNS wire: UDP and TCP listeners on one port, handing each query to `answers.answer`,
with an optional per-client rate limit."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.rcode

from esgf_ha.balancer.ratelimit import RateLimiter

log = logging.getLogger("esgf_ha.balancer.dns")

Responder = Callable[[dns.message.Message, str], dns.message.Message]  # (query, "udp"|"tcp")
UDP_DEFAULT_SIZE = 512
# a TCP client must send each query within this time (idle and slow clients are closed)
TCP_IDLE_SECONDS = 10.0
# TCP clients open at once; over it the oldest is closed (resolvers retry; UDP is unaffected)
MAX_TCP_CLIENTS = 256


def respond_to_wire(
    wire: bytes, responder: Responder, transport: str, max_size: int | None
) -> bytes | None:
    """The response bytes for one query, or None when the packet is not worth an answer."""
    try:
        query = dns.message.from_wire(wire)
    except dns.message.ShortHeader:
        return None
    except dns.exception.DNSException:
        return _formerr(wire)
    if query.flags & dns.flags.QR:
        return None  # a response sent to us: answering could start a loop
    response = responder(query, transport)
    size = max_size
    if size is not None:
        size = max(UDP_DEFAULT_SIZE, query.payload if query.edns >= 0 else UDP_DEFAULT_SIZE)
    try:
        return response.to_wire(max_size=size or 65535)
    except dns.exception.TooBig:
        response.answer.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire()


def _truncated(wire: bytes) -> bytes | None:
    """An empty answer with TC set: "ask again over TCP"."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    if query.flags & dns.flags.QR:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.TC
    return response.to_wire()


def _formerr(wire: bytes) -> bytes:
    # echo the id with QR and FORMERR; the rest of the packet could not be trusted
    (query_id,) = struct.unpack("!H", wire[:2])
    flags = dns.flags.QR | dns.rcode.FORMERR
    return struct.pack("!HHHHHH", query_id, flags, 0, 0, 0, 0)


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, limiter: RateLimiter | None = None) -> None:
        self.responder = responder
        self.limiter = limiter
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.limiter is not None and not self.limiter.allow(str(addr[0])):
            out = _truncated(data) if self.limiter.slip() else None
        else:
            out = respond_to_wire(data, self.responder, "udp", UDP_DEFAULT_SIZE)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def _tcp_client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    responder: Responder,
    limiter: RateLimiter | None,
) -> None:
    peer = writer.get_extra_info("peername")
    # a bucket of its own: a client sent here by a truncated UDP answer must get through
    client = "tcp " + (str(peer[0]) if peer else "")
    try:
        while True:
            header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
            (length,) = struct.unpack("!H", header)
            wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_SECONDS)
            if limiter is not None and not limiter.allow(client):
                break  # over TCP the source is real: hanging up is the answer
            out = respond_to_wire(wire, responder, "tcp", None)
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def bind_pair(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on the same port (port 0: a free one both can use)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((address, port))
        chosen = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((address, chosen))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        tcp.listen(128)
        return udp, tcp
    raise OSError(f"no port free for both UDP and TCP on {address}")


async def start_dns(
    address: str,
    port: int,
    responder: Responder,
    limiter: RateLimiter | None = None,
    max_tcp_clients: int = MAX_TCP_CLIENTS,
) -> tuple[int, asyncio.DatagramTransport, asyncio.Server]:
    udp_sock, tcp_sock = bind_pair(address, port)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpProtocol(responder, limiter), sock=udp_sock
    )
    clients = _TcpClients(responder, limiter, max_tcp_clients)
    server = await asyncio.start_server(clients.serve, sock=tcp_sock)
    return udp_sock.getsockname()[1], transport, server


class _TcpClients:
    """Serves TCP clients, each under the idle time limit of `_tcp_client`, at most `cap` at
    once: over the cap the oldest connection is closed, so idle connections can delay a new
    client by nothing, where refusing new ones would let them lock every client out."""

    def __init__(self, responder: Responder, limiter: RateLimiter | None, cap: int) -> None:
        self.responder = responder
        self.limiter = limiter
        self.cap = cap
        self.open: dict[asyncio.StreamWriter, None] = {}  # oldest first

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open[writer] = None
        if len(self.open) > self.cap:
            oldest = next(iter(self.open))
            self.open.pop(oldest)
            oldest.close()
        try:
            await _tcp_client(reader, writer, self.responder, self.limiter)
        finally:
            self.open.pop(writer, None)
