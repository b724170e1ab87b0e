"""The pieces the index's OpenAPI document is built from.

A query parameter is declared once, as a `QueryParam`, and that one object serves both the
handler that reads it (its bounds and choices) and the document that describes it (its
schema), so neither can gain a parameter or a bound the other lacks. Operations are written with
`operation`, so every part of the document states security, bodies and error answers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from esgf_ha.common.edge import ERROR_SCHEMA
from esgf_ha.index.errors import BadRequest

Schema = dict[str, Any]
OBJECT: Schema = {"type": "object"}
SECURITY_SCHEMES: Schema = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
# what each error status means wherever it is answered; the body is always the edge's
_ERROR_TEXT = {
    400: "bad parameter or body",
    401: "no or invalid token",
    403: "the token lacks the scope",
    404: "no such record",
    409: "conflicts with what is stored",
    413: "request too large",
}


@dataclass(frozen=True)
class QueryParam:
    """One optional query parameter: its JSON type, bounds or choices, and its meaning.

    A string parameter without choices may not be empty (esg-search refuses an empty value);
    `examples` are values the fuzzer tries beside the ones it makes up."""

    name: str
    kind: Literal["string", "integer", "number", "boolean"]
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter, both inclusive."""
        assert self.low is not None and self.high is not None, f"{self.name} has no bounds"
        return self.low, self.high

    def read(self, raw: str | None, default: Any) -> Any:
        """The value of a request's `raw` text (`default` when absent or empty), held to the
        kind, bounds and choices the document states; BadRequest names what is wrong."""
        if raw is None or raw == "":
            return default
        if self.choices:
            if raw not in self.choices:
                raise BadRequest(f"{self.name} must be {' or '.join(self.choices)}, got {raw!r}")
            return raw
        if self.kind not in ("integer", "number"):
            return raw
        convert, what = (int, "an integer") if self.kind == "integer" else (float, "a number")
        try:
            value = convert(raw)
        except ValueError:
            raise BadRequest(f"{self.name} must be {what}, got {raw!r}") from None
        low, high = self.bounds
        if not low <= value <= high:
            raise BadRequest(
                f"{self.name} must be between {_plain(low)} and {_plain(high)}, got {raw}"
            )
        return value

    @property
    def schema(self) -> Schema:
        schema: Schema = {"type": self.kind}
        if self.choices:
            schema["enum"] = list(self.choices)
        elif self.kind == "string":
            schema["minLength"] = 1
        if self.low is not None:
            schema["minimum"] = self.low
        if self.high is not None:
            schema["maximum"] = self.high
        return schema

    def openapi(self) -> Schema:
        param: Schema = {
            "name": self.name,
            "in": "query",
            "required": False,
            "schema": self.schema,
            "description": self.description,
        }
        if self.examples:
            param["examples"] = {f"e{i}": {"value": v} for i, v in enumerate(self.examples)}
        return param


def _plain(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def json_body(properties: dict[str, Schema], required: list[str]) -> Schema:
    """A required JSON request body: one object with these properties."""
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def json_answer(description: str, schema: Schema | None = None) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or OBJECT}},
    }


def errors(*codes: int) -> dict[str, Schema]:
    return {str(c): json_answer(_ERROR_TEXT[c], ERROR_SCHEMA) for c in codes}


def operation(
    summary: str,
    answers: dict[str, Schema],
    *,
    secured: bool = False,
    params: list[QueryParam] | None = None,
    body: Schema | None = None,
    refusals: tuple[int, ...] = (),
) -> Schema:
    """One operation; a `secured` one takes a bearer token and may answer 401 and 403 besides
    its `refusals`, all with the edge's JSON error body."""
    op: Schema = {"summary": summary}
    if secured:
        op["security"] = [{"bearer": []}]
    if params:
        op["parameters"] = [p.openapi() for p in params]
    if body is not None:
        op["requestBody"] = body
    codes = sorted(set(refusals) | ({401, 403} if secured else set()))
    op["responses"] = {**answers, **errors(*codes)}
    return op
