"""OpenAPI description of the replication endpoints (all need scope esgf:replicate)."""

from __future__ import annotations

from typing import Any

from esgf_ha.index.openapi_schema import BEARER, json_answer, json_body, query

_ERRORS = {
    "400": json_answer("bad parameter"),
    "401": json_answer("no or invalid token"),
    "403": json_answer("the token lacks esgf:replicate"),
}
_ENTRY = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer"},
        "at": {"type": "number", "description": "commit time, seconds since the epoch"},
        "kind": {"type": "string", "enum": ["publish", "retract", "delete", "update", "bulk"]},
        "payload": {
            "type": "object",
            "properties": {
                "put": {"type": "array", "description": "[core, record] pairs written"},
                "del": {"type": "array", "description": "[core, id] pairs removed"},
            },
        },
    },
}
_CHANGES = {
    "type": "object",
    "properties": {
        "since": {"type": "integer"},
        "since_at": {"type": ["number", "null"]},
        "ahead": {"type": "boolean", "description": "since is beyond the log's last entry"},
        "last_seq": {"type": "integer"},
        "last_at": {"type": ["number", "null"]},
        "next_at": {"type": ["number", "null"]},
        "changes": {"type": "array", "items": _ENTRY},
    },
}
_RANGE = {"type": "array", "minItems": 2, "maxItems": 3}


def paths() -> dict[str, Any]:
    bearer = BEARER
    return {
        "/api/v1/changes": {
            "get": {
                "summary": "Change-log entries after `since`, oldest first (long-poll)",
                "security": bearer,
                "parameters": [
                    query("since", {"type": "integer", "minimum": 0}, "last seq already held"),
                    query("limit", {"type": "integer", "minimum": 0, "maximum": 1000}, "entries"),
                    query(
                        "wait",
                        {"type": "number", "minimum": 0, "maximum": 60},
                        "seconds to wait for a new entry when there is none",
                    ),
                ],
                "responses": {"200": json_answer("entries", _CHANGES), **_ERRORS},
            }
        },
        "/api/v1/snapshot": {
            "get": {
                "summary": "A consistent copy of the index (tar: manifest, store, facet "
                "index, hashes)",
                "security": bearer,
                "responses": {
                    "200": {"description": "tar stream", "content": {"application/x-tar": {}}},
                    **_ERRORS,
                },
            }
        },
        "/api/v1/digest": {
            "post": {
                "summary": "Content digests of id ranges, split points, or (id, hash) lists",
                "security": bearer,
                "requestBody": json_body(
                    {
                        "core": {"type": "string", "enum": ["Dataset", "File", "Aggregation"]},
                        "ranges": {"type": "array", "items": _RANGE},
                        "split": {"type": "array", "minItems": 3, "maxItems": 3},
                    },
                    ["core"],
                ),
                "responses": {"200": json_answer("digests or bounds"), **_ERRORS},
            }
        },
        "/api/v1/replication": {
            "get": {
                "summary": "Replication position, lag and upstream state",
                "security": bearer,
                "responses": {"200": json_answer("status"), **_ERRORS},
            }
        },
        "/api/v1/replication/pause": {
            "post": {
                "summary": "Stop applying upstream changes (replicas only)",
                "security": bearer,
                "responses": {"200": json_answer("paused"), **_ERRORS},
            }
        },
        "/api/v1/replication/resume": {
            "post": {
                "summary": "Apply upstream changes again (replicas only)",
                "security": bearer,
                "responses": {"200": json_answer("resumed"), **_ERRORS},
            }
        },
    }
