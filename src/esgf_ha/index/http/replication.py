"""The replication feed replicas pull from: `/api/v1/changes`, `/snapshot`, `/digest`, and the
replica's own `/api/v1/replication` status and pause/resume. Every call needs `esgf:replicate`."""

from __future__ import annotations

import logging

import orjson
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from esgf_ha.common.auth import Principal, TokenVerifier
from esgf_ha.index.bootstrap import SEQ_HEADER, make_snapshot
from esgf_ha.index.changes import MAX_LIMIT, MAX_WAIT, ChangeFeed, ChangesQuery
from esgf_ha.index.errors import BadRequest
from esgf_ha.index.follower import AnyFollower
from esgf_ha.index.http.writes import WriteGate
from esgf_ha.index.openapi_schema import QueryParam, json_body
from esgf_ha.index.service import DigestRange, IndexService
from esgf_ha.index.settings import IndexSettings
from esgf_ha.records.schema import CORES

log = logging.getLogger("esgf_ha.index.http")
SCOPE = "esgf:replicate"
# a digest request names at most this many ranges, or splits one into this many parts at most
MAX_RANGES = 256
MAX_PARTS = 256
# the highest `since` taken: a sequence number SQLite stores as a signed 64-bit integer
MAX_SEQ = 2**62
SINCE = QueryParam("since", "integer", "last seq already held", 0, MAX_SEQ)
LIMIT = QueryParam("limit", "integer", "entries", 0, MAX_LIMIT)
WAIT = QueryParam(
    "wait", "number", "seconds to wait for a new entry when there is none", 0, MAX_WAIT
)
ENCODING = QueryParam(
    "encoding", "string", "json, or zlib: the same body compressed", choices=("json", "zlib")
)
CHANGES_PARAMS = [SINCE, LIMIT, WAIT, ENCODING]
_RANGE = {"type": "array", "minItems": 2, "maxItems": 3, "description": "[lo, hi|null, list?]"}
DIGEST_BODY = json_body(
    {
        "core": {"type": "string", "enum": list(CORES)},
        "ranges": {"type": "array", "items": _RANGE, "minItems": 1, "maxItems": MAX_RANGES},
        "split": {
            "type": "array",
            "minItems": 3,
            "maxItems": 3,
            "description": f"[lo, hi|null, parts], parts from 2 to {MAX_PARTS}",
        },
    },
    ["core"],
)


def _bound(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"{name} must be a string or null")


def digest_request(
    body: object,
) -> tuple[str, list[DigestRange] | None, tuple[str, str | None, int] | None]:
    """Validate a digest request (DIGEST_BODY): {"core", "ranges": [[lo, hi|null, list?], ...]}
    or {"core", "split": [lo, hi|null, parts]}."""
    if not isinstance(body, dict) or body.get("core") not in CORES:
        raise BadRequest('expected {"core": "Dataset"|"File"|"Aggregation", ...}')
    split = body.get("split")
    if split is not None:
        if not isinstance(split, list) or len(split) != 3 or not isinstance(split[2], int):
            raise BadRequest("split must be [lo, hi|null, parts]")
        if not 2 <= split[2] <= MAX_PARTS:
            raise BadRequest(f"parts must be between 2 and {MAX_PARTS}")
        return body["core"], None, (_bound(split[0], "lo") or "", _bound(split[1], "hi"), split[2])
    ranges = body.get("ranges")
    if not isinstance(ranges, list) or not ranges or len(ranges) > MAX_RANGES:
        raise BadRequest(f"ranges must be a list of 1 to {MAX_RANGES} [lo, hi|null, list?] items")
    out: list[DigestRange] = []
    for item in ranges:
        if not isinstance(item, list) or len(item) not in (2, 3):
            raise BadRequest("each range must be [lo, hi|null] or [lo, hi|null, true]")
        out.append((_bound(item[0], "lo") or "", _bound(item[1], "hi"), bool(item[2:] and item[2])))
    return body["core"], out, None


class Replication:
    def __init__(
        self,
        service: IndexService,
        settings: IndexSettings,
        verifier: TokenVerifier,
        gate: WriteGate,
        follower: AnyFollower | None,
        feed: ChangeFeed,
    ) -> None:
        self.service = service
        self.settings = settings
        self.verifier = verifier
        self.gate = gate  # the digest request's body is capped like a write's
        self.follower = follower
        self.feed = feed

    def replicator(self, request: Request) -> Principal:
        return self.verifier.verify(request.headers.get("authorization"), SCOPE)

    async def changes(self, request: Request) -> Response:
        self.replicator(request)
        given = request.query_params
        since: int = SINCE.read(given.get(SINCE.name), 0)
        limit: int = LIMIT.read(given.get(LIMIT.name), 100)
        wait: float = WAIT.read(given.get(WAIT.name), 0.0)
        encoding: str = ENCODING.read(given.get(ENCODING.name), "json")
        if wait and limit:
            await self.feed.wait_beyond(lambda: self.service.seq, since, wait)
        query = ChangesQuery(since, limit, wait, compressed=encoding == "zlib")
        body = await run_in_threadpool(self.service.changes, query)
        return Response(body, media_type="application/json")

    async def snapshot(self, request: Request) -> Response:
        self.replicator(request)
        snap = await run_in_threadpool(
            make_snapshot, self.service, self.settings.state_dir / "snapshots"
        )
        log.info("snapshot served", extra={"seq": snap.seq, "bytes": snap.size})
        return StreamingResponse(
            iterate_in_threadpool(snap.stream()),
            media_type="application/x-tar",
            headers={SEQ_HEADER: str(snap.seq), "Content-Length": str(snap.size)},
            background=BackgroundTask(snap.remove),
        )

    async def digest(self, request: Request) -> Response:
        self.replicator(request)
        core, ranges, split = digest_request(await self.gate.json_body(request))
        if split is not None:
            low, high, parts = split
            bounds = await run_in_threadpool(self.service.split_points, core, low, high, parts)
            answer: dict[str, object] = {"bounds": bounds}
        else:
            assert ranges is not None  # digest_request returns one or the other
            digests = await run_in_threadpool(self.service.digests, core, ranges)
            answer = {"digests": digests}
        return Response(orjson.dumps({"core": core, **answer}), media_type="application/json")

    def following(self, request: Request) -> AnyFollower:
        self.replicator(request)
        if self.follower is None:
            raise BadRequest("this index is the master: it follows no upstream")
        return self.follower

    async def status(self, request: Request) -> Response:
        self.replicator(request)
        lag = self.follower.lag() if self.follower is not None else 0.0
        body: dict[str, object] = {"role": self.settings.role, "seq": self.service.seq, "lag": lag}
        if self.follower is not None:
            body["upstream"] = self.follower.status().as_json()
            body["applied_records"] = self.follower.applied_records
            body["applied_entries"] = self.follower.applied_entries
        return JSONResponse(body)

    async def pause(self, request: Request) -> Response:
        target = self.following(request)
        await run_in_threadpool(target.pause)
        return JSONResponse({"ok": True, "paused": True, "seq": self.service.seq})

    async def resume(self, request: Request) -> Response:
        target = self.following(request)
        await run_in_threadpool(target.resume)
        return JSONResponse({"ok": True, "paused": False, "seq": self.service.seq})
