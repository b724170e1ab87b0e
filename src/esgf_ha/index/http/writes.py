"""The gate every publication write passes: who may write, and how much may be sent."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl

import orjson
from cryptography import x509
from starlette.requests import Request

from esgf_ha.common.auth import Principal, TokenVerifier
from esgf_ha.index.binding import Binding
from esgf_ha.index.errors import BadRequest, Forbidden
from esgf_ha.index.limits import WriteLimits, read_capped
from esgf_ha.index.openapi_schema import json_body
from esgf_ha.index.settings import IndexSettings

# the body `json_ids` takes, as OpenAPI describes it
IDS_BODY = json_body(
    {"ids": {"type": "array", "items": {"type": "string"}, "minItems": 1}}, ["ids"]
)


class WriteGate:
    def __init__(self, settings: IndexSettings, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in settings.ws_anonymous_from]
        self.limits = WriteLimits(
            settings.max_body_bytes,
            settings.max_ws_body_bytes,
            settings.max_batch_records,
            settings.max_record_fields,
            settings.max_field_values,
            settings.max_value_chars,
        )

    async def body(self, request: Request, *, ws: bool = False) -> bytes:
        limits = self.limits
        limit, setting = (
            (limits.max_ws_body_bytes, "max_ws_body_bytes")
            if ws
            else (limits.max_body_bytes, "max_body_bytes")
        )
        return await read_capped(
            request.stream(), request.headers.get("content-length"), limit, setting
        )

    async def json_body(self, request: Request) -> object:
        body = await self.body(request)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"invalid JSON: {exc}") from None

    async def form_ids(self, request: Request) -> list[str]:
        """Dataset ids of a `/ws/retract` or `/ws/delete` form (body and query alike)."""
        body = await self.body(request, ws=True)
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=False)
        pairs += list(request.query_params.multi_items())
        ids = [v for k, v in pairs if k == "id"]
        if not ids:
            raise BadRequest("no id given: send form field id=<dataset id> (repeatable)")
        self.limits.check_ids(ids)
        return ids

    def json_ids(self, body: object) -> list[str]:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("ids"), list)
            or not body["ids"]
            or not all(isinstance(i, str) and i for i in body["ids"])
        ):
            raise BadRequest('expected {"ids": ["<dataset id>", ...]}')
        self.limits.check_ids(body["ids"])
        return list(body["ids"])

    def writer(self, request: Request, *, legacy: bool = False) -> Binding | None:
        """Authorise a publication write; the records it may touch (None: any)."""
        return Binding.of(self.authorize(request, "esgf:publish", legacy=legacy))

    def authorize(self, request: Request, scope: str, *, legacy: bool = False) -> Principal:
        if self.settings.role != "master":
            raise Forbidden(
                "this index is a read-only replica (it follows "
                f"{self.settings.upstream or 'an upstream index'}); publish to the master"
            )
        anonymous = not request.headers.get("authorization")
        if legacy and self.trusted and anonymous:
            peer = request.client.host if request.client else ""
            if self._trusted(peer):
                return Principal(f"trusted-network:{peer}", frozenset({scope}), "network")
        cert = getattr(request.state, "tls_client_cert", None)
        if cert and anonymous:
            subject = x509.load_der_x509_certificate(cert).subject.rfc4514_string()
            return Principal(subject, frozenset({"esgf:publish"}), "certificate")
        return self.verifier.verify(request.headers.get("authorization"), scope)

    def _trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self.trusted)
