"""Network faults between real services: a TCP proxy on loopback that forwards to a real
server and can cut every response after N bytes, slow it down, or just record the requests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Proxy:
    target: tuple[str, int]
    cut_after: int | None = None  # close each connection after this many response bytes
    rate: float | None = None  # response bytes per second per connection
    address: str = "127.0.0.1"
    requests: list[bytes] = field(default_factory=list)  # request heads seen
    response_bytes: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server((self.address, 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def ranges(self) -> list[str]:
        out = []
        for head in self.requests:
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("range:"):
                    out.append(line.split(":", 1)[1].strip())
        return out

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
        sent = 0
        began = time.monotonic()
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                if self.cut_after is not None and sent + len(chunk) > self.cut_after:
                    chunk = chunk[: self.cut_after - sent]
                    client.sendall(chunk)
                    self._count(len(chunk))
                    break
                client.sendall(chunk)
                sent += len(chunk)
                self._count(len(chunk))
                if self.rate:
                    ahead = sent / self.rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    with self._lock:
                        self.requests.append(head)
                    upstream.sendall(head + b"\r\n\r\n")
        except OSError:
            pass

    def _count(self, n: int) -> None:
        with self._lock:
            self.response_bytes += n
