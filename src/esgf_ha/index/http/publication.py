"""Our JSON publication API: `/api/v1/publish`, `/retract`, `/delete`."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from esgf_ha.index.http.writes import WriteGate
from esgf_ha.index.publish import Outcome
from esgf_ha.index.service import IndexService


class Publication:
    def __init__(self, service: IndexService, gate: WriteGate) -> None:
        self.service = service
        self.gate = gate

    async def publish(self, request: Request) -> Response:
        binding = self.gate.writer(request)
        batch = await self.gate.json_body(request)

        def publish() -> Outcome:
            self.gate.limits.check_batch(batch)
            return self.service.publish_batch(batch, binding)

        outcome = await run_in_threadpool(publish)
        return JSONResponse(
            {
                "ok": True,
                "published": outcome.published,
                "unchanged": outcome.unchanged,
                "seq": self.service.seq,
            }
        )

    async def retract(self, request: Request) -> Response:
        binding = self.gate.writer(request)
        ids = self.gate.json_ids(await self.gate.json_body(request))
        outcome = await run_in_threadpool(self.service.retract, ids, binding)
        return JSONResponse({"ok": True, "retracted": outcome.retracted, "seq": self.service.seq})

    async def delete(self, request: Request) -> Response:
        binding = self.gate.writer(request)
        ids = self.gate.json_ids(await self.gate.json_body(request))
        outcome = await run_in_threadpool(self.service.delete, ids, binding)
        return JSONResponse({"ok": True, "deleted": outcome.deleted, "seq": self.service.seq})
