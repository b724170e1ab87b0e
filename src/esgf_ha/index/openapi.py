"""OpenAPI description of the index node's HTTP endpoints (the JSON ones in full).

Nothing here restates a rule: query parameters are the `QueryParam`s their handlers read
(`params.SEARCH_PARAMS`, `http.replication.CHANGES_PARAMS`), request bodies sit beside the
function that checks them, and the error and readiness bodies are the edge's.
"""

from __future__ import annotations

from typing import Any

from esgf_ha.common.edge import READINESS_SCHEMA
from esgf_ha.index.http.replication import CHANGES_PARAMS, DIGEST_BODY
from esgf_ha.index.http.writes import IDS_BODY
from esgf_ha.index.openapi_schema import (
    OBJECT,
    SECURITY_SCHEMES,
    Schema,
    json_answer,
    json_body,
    operation,
)
from esgf_ha.index.params import FACET_EXAMPLES, SEARCH_PARAMS
from esgf_ha.index.publish import CHILDREN
from esgf_ha.index.render import JSON_TYPE, XML_TYPE

_RECORD = {"type": "object", "additionalProperties": True, "description": "an ESGF record"}
_BATCH = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "dataset": _RECORD,
            **{key: {"type": "array", "items": _RECORD} for key, _ in CHILDREN},
        },
        "required": ["dataset"],
    },
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
_READINESS = {"application/json": {"schema": READINESS_SCHEMA}}
_SOLR = {"schema": OBJECT}


def _media(content_type: str) -> str:
    return content_type.split(";")[0]


def _search() -> dict[str, Any]:
    """esg-search's own answers: Solr JSON or XML, and HTML error pages clients grep."""
    html: Schema = {"text/html": {}}
    params = [p.doc for p in SEARCH_PARAMS.values()] + list(FACET_EXAMPLES)
    answers = {
        "200": {
            "description": "Solr JSON or XML, by `format`",
            "content": {_media(JSON_TYPE): _SOLR, _media(XML_TYPE): {}},
        },
        "400": {"description": "bad parameter", "content": html},
        "503": {
            "description": "the search ran past its time limit (Retry-After)",
            "content": {_media(JSON_TYPE): _SOLR},
        },
        "501": {"description": "unknown format", "content": html},
    }
    op = operation("ESGF search (Solr-shaped response)", answers, params=params)
    return {"/esg-search/search": {"get": op}}


def _publication() -> dict[str, Any]:
    paths = {
        "/api/v1/publish": {
            "post": operation(
                "Publish datasets with their files, atomically",
                {"200": json_answer("published")},
                secured=True,
                body=json_body({"datasets": _BATCH}, ["datasets"]),
                refusals=(400, 409, 413),
            )
        }
    }
    for verb, summary, done in (
        ("retract", "Retract dataset versions", "retracted"),
        ("delete", "Delete records and their children", "deleted"),
    ):
        answers = {"200": json_answer(done)}
        op = operation(summary, answers, secured=True, body=IDS_BODY, refusals=(400, 404, 413))
        paths[f"/api/v1/{verb}"] = {"post": op}
    return paths


def _replication() -> dict[str, Any]:
    """The feed replicas pull; every call needs a token with scope esgf:replicate."""
    tar = {"description": "tar stream", "content": {"application/x-tar": {}}}

    def replicate(summary: str, answer: Schema, **more: Any) -> dict[str, Any]:
        return operation(summary, {"200": answer}, secured=True, refusals=(400,), **more)

    return {
        "/api/v1/changes": {
            "get": replicate(
                "Change-log entries after `since`, oldest first (long-poll)",
                json_answer("entries", _CHANGES),
                params=CHANGES_PARAMS,
            )
        },
        "/api/v1/snapshot": {
            "get": replicate(
                "A consistent copy of the index (tar: manifest, store, facet index, hashes)", tar
            )
        },
        "/api/v1/digest": {
            "post": replicate(
                "Content digests of id ranges, split points, or (id, hash) lists",
                json_answer("digests or bounds"),
                body=DIGEST_BODY,
            )
        },
        "/api/v1/replication": {
            "get": replicate("Replication position, lag and upstream state", json_answer("status"))
        },
        "/api/v1/replication/pause": {
            "post": replicate(
                "Stop applying upstream changes (replicas only)", json_answer("paused")
            )
        },
        "/api/v1/replication/resume": {
            "post": replicate(
                "Apply upstream changes again (replicas only)", json_answer("resumed")
            )
        },
    }


def _operations() -> dict[str, Any]:
    return {
        "/api/v1/status": {
            "get": operation("Index role, record counts, sequence", {"200": json_answer("status")})
        },
        "/livez": {"get": operation("Process alive", {"200": json_answer("alive")})},
        "/readyz": {
            "get": operation(
                "Able to answer correctly now (store open, lag under threshold)",
                {
                    "200": {"description": "ready", "content": _READINESS},
                    "503": {"description": "not ready", "content": _READINESS},
                },
            )
        },
    }


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "esgf-ha index node", "version": version},
        "components": {"securitySchemes": SECURITY_SCHEMES},
        "paths": {**_search(), **_publication(), **_operations(), **_replication()},
    }
