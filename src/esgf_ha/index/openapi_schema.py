"""The pieces the index's OpenAPI documents are built from, so that the search, publication
and replication parts describe parameters, bodies and answers the same way."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
OBJECT: Schema = {"type": "object"}


def query(
    name: str, schema: Schema, description: str, examples: list[str] | None = None
) -> dict[str, Any]:
    """An optional query parameter; `examples` are values the fuzzer tries too."""
    param: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }
    if examples:
        param["examples"] = {f"e{i}": {"value": v} for i, v in enumerate(examples)}
    return param


def json_body(properties: dict[str, Schema], required: list[str]) -> dict[str, Any]:
    """A required JSON request body: one object with these properties."""
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def json_answer(description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or OBJECT}},
    }
