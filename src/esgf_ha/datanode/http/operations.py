"""Operations endpoints of the data node: liveness, readiness, metrics."""

from __future__ import annotations

import anyio
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from esgf_ha.common.edge import PREFIX, Metrics, readiness
from esgf_ha.datanode.service import DataNode


class DataMetrics(Metrics):
    """The common request metrics plus the body bytes sent, per endpoint."""

    def __init__(self) -> None:
        super().__init__("data")
        self.bytes = Counter(
            PREFIX + "data_bytes_sent",
            "file and OPeNDAP body bytes sent",
            ["endpoint"],
            registry=self.registry,
        )


class Operations:
    def __init__(self, node: DataNode, metrics: DataMetrics) -> None:
        self.node = node
        self.metrics = metrics

    async def livez(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(self, request: Request) -> Response:
        problems = await anyio.to_thread.run_sync(self.node.not_ready)
        return readiness("data", problems, **self.node.describe())

    async def prometheus(self, request: Request) -> Response:
        return self.metrics.response()
