"""The uvicorn and h11 internals the data node's sendfile path and our server runner rely on.

They are not public API: an upgrade that renames them would quietly send every file through the
slow path (or break shutdown hooks). These checks fail loudly, naming what moved, on a real
server on a loopback socket.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import h11
import httpx
import uvicorn

from esgf_ha.common.server import bind, uvicorn_config
from esgf_ha.datanode.files import SendfileProtocol


def test_sendfile_protocol_reaches_the_request_with_h11_state() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        protocol = (scope.get("state") or {}).get("sendfile_protocol")
        seen["protocol"] = protocol
        seen["conn"] = getattr(protocol, "conn", None)
        seen["transport"] = getattr(protocol, "transport", None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, None, SendfileProtocol))
    assert hasattr(server, "handle_exit"), "uvicorn.Server.handle_exit is gone (graceful stop)"
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        port = sock.getsockname()[1]
        for _ in range(100):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "ok"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    assert isinstance(seen["protocol"], SendfileProtocol), "protocol not in scope['state']"
    assert isinstance(seen["conn"], h11.Connection), "H11Protocol.conn is no h11.Connection"
    assert callable(getattr(seen["conn"], "send_with_data_passthrough", None)), (
        "h11.Connection.send_with_data_passthrough is gone (sendfile framing)"
    )
    transport = seen["transport"]
    for name in ("get_extra_info", "get_write_buffer_size", "is_reading", "pause_reading"):
        assert callable(getattr(transport, name, None)), f"transport.{name} is gone"
