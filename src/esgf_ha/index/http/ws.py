"""esg-search's publishing service, `/esg-search/ws/*`: XML records in, XML status documents
out, as esgcet and the other legacy publishers expect."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from esgf_ha.index import ws_xml
from esgf_ha.index.errors import BadRequest
from esgf_ha.index.http.writes import WriteGate
from esgf_ha.index.service import IndexService


def ws_error(status: int, message: str) -> Response:
    return Response(
        ws_xml.status_document(False, [message]), status_code=status, media_type="application/xml"
    )


def _done(messages: list[str]) -> Response:
    return Response(ws_xml.status_document(True, messages), media_type="application/xml")


class LegacyPublication:
    def __init__(self, service: IndexService, gate: WriteGate) -> None:
        self.service = service
        self.gate = gate

    async def ping(self, request: Request) -> Response:
        return PlainTextResponse("ESGF REST Publishing Service")

    async def publish(self, request: Request) -> Response:
        binding = self.gate.writer(request, legacy=True)
        record = ws_xml.parse_record(await self.gate.body(request, ws=True))
        self.gate.limits.check_record(record, "record")
        outcome = await run_in_threadpool(self.service.publish_record, record, binding)
        return _done(outcome.messages)

    async def unpublish(self, request: Request) -> Response:
        binding = self.gate.writer(request, legacy=True)
        record = ws_xml.parse_record(await self.gate.body(request, ws=True))
        if "id" not in record:
            raise BadRequest("the document lacks an id field")
        outcome = await run_in_threadpool(self.service.delete, [str(record["id"])], binding)
        return _done([f"Unpublished record: {i}" for i in outcome.deleted])

    async def update(self, request: Request) -> Response:
        binding = self.gate.writer(request, legacy=True)
        core, action, updates = ws_xml.parse_updates(await self.gate.body(request, ws=True))
        self.gate.limits.check_updates(updates)  # type: ignore[arg-type]
        outcome = await run_in_threadpool(self.service.update, core, action, updates, binding)
        return _done(outcome.messages)

    async def retract(self, request: Request) -> Response:
        binding = self.gate.writer(request, legacy=True)
        ids = await self.gate.form_ids(request)
        outcome = await run_in_threadpool(self.service.retract, ids, binding)
        return _done(outcome.messages)

    async def delete(self, request: Request) -> Response:
        binding = self.gate.writer(request, legacy=True)
        ids = await self.gate.form_ids(request)
        outcome = await run_in_threadpool(self.service.delete, ids, binding)
        return _done(outcome.messages)
