"""OpenAPI description of the index node's HTTP endpoints (the JSON ones in full)."""

from __future__ import annotations

from typing import Any

from esgf_ha.common.edge import READINESS_SCHEMA
from esgf_ha.index import openapi_replication
from esgf_ha.index.openapi_schema import BEARER, json_answer, json_body, query

_ERROR = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "status": {"type": "integer"},
        "error": {"type": "string"},
    },
    "required": ["ok", "status", "error"],
}
_RECORD = {"type": "object", "additionalProperties": True, "description": "an ESGF record"}
_BATCH = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "dataset": _RECORD,
            "files": {"type": "array", "items": _RECORD},
            "aggregations": {"type": "array", "items": _RECORD},
        },
        "required": ["dataset"],
    },
}


_READINESS = {"application/json": {"schema": READINESS_SCHEMA}}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(c): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for c in codes
    }


# Values at the edges of what a date parameter can hold: the fuzzer tries these examples
_DATE_EXAMPLES = [
    "2020-01-01T00:00:00Z",
    "NOW-1DAY",
    "NOW+10000YEARS",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
]


def _search_params() -> list[dict[str, Any]]:
    p = query
    text = {"type": "string", "minLength": 1}
    date = {"type": "string", "minLength": 1}
    return [
        p("type", {"type": "string", "enum": ["Dataset", "File", "Aggregation"]}, "record type"),
        p("format", {"type": "string", "enum": ["application/solr+json"]}, "response format"),
        p(
            "query",
            text,
            "Lucene query",
            ["datetime_start:[0001-01-01T00:00:00+01:00 TO *]", "*a*b*c*", "tas OR pr"],
        ),
        p("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, "first record"),
        p("limit", {"type": "integer", "minimum": 0, "maximum": 10000}, "page size"),
        p("facets", text, "comma list of facets, or *"),
        p("fields", text, "comma list of fields, or *"),
        p("distrib", {"type": "boolean"}, "accepted for compatibility"),
        p("latest", {"type": "boolean"}, "latest versions only"),
        p("replica", {"type": "boolean"}, "replicas (true) or masters (false)"),
        p("retracted", {"type": "boolean"}, "retracted or not"),
        p("project", text, "facet constraint"),
        p("variable_id", text, "facet constraint"),
        p("min_version", text, "lowest version"),
        p("max_version", text, "highest version"),
        p("start", date, "data coverage ends after (ISO date)", _DATE_EXAMPLES),
        p("end", date, "data coverage starts before (ISO date)", _DATE_EXAMPLES),
        p("from", date, "indexed after (ISO date or NOW-1DAY)", _DATE_EXAMPLES),
        p("to", date, "indexed before", _DATE_EXAMPLES),
        p("bbox", text, "[west,south,east,north]"),
        p("sort", {"type": "boolean"}, "newest first"),
    ]


def document(version: str) -> dict[str, Any]:
    bearer = BEARER
    ids = {"ids": {"type": "array", "items": {"type": "string"}, "minItems": 1}}
    ids_body = json_body(ids, ["ids"])
    return {
        "openapi": "3.0.3",
        "info": {"title": "esgf-ha index node", "version": version},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        "paths": {
            "/esg-search/search": {
                "get": {
                    "summary": "ESGF search (Solr-shaped response)",
                    "parameters": _search_params(),
                    "responses": {
                        "200": {
                            "description": "Solr JSON",
                            "content": {"text/json": {"schema": {"type": "object"}}},
                        },
                        "400": {"description": "bad parameter", "content": {"text/html": {}}},
                        "503": {
                            "description": "the search ran past its time limit (Retry-After)",
                            "content": {"text/json": {"schema": {"type": "object"}}},
                        },
                        "501": {"description": "unknown format", "content": {"text/html": {}}},
                    },
                }
            },
            "/api/v1/publish": {
                "post": {
                    "summary": "Publish datasets with their files, atomically",
                    "security": bearer,
                    "requestBody": json_body({"datasets": _BATCH}, ["datasets"]),
                    "responses": {
                        "200": json_answer("published"),
                        **_errors(400, 401, 403, 409, 413),
                    },
                }
            },
            "/api/v1/retract": {
                "post": {
                    "summary": "Retract dataset versions",
                    "security": bearer,
                    "requestBody": ids_body,
                    "responses": {
                        "200": {"description": "retracted", "content": {"application/json": {}}},
                        **_errors(400, 401, 403, 404, 413),
                    },
                }
            },
            "/api/v1/delete": {
                "post": {
                    "summary": "Delete records and their children",
                    "security": bearer,
                    "requestBody": ids_body,
                    "responses": {
                        "200": {"description": "deleted", "content": {"application/json": {}}},
                        **_errors(400, 401, 403, 404, 413),
                    },
                }
            },
            "/api/v1/status": {
                "get": {
                    "summary": "Index role, record counts, sequence",
                    "responses": {
                        "200": {"description": "status", "content": {"application/json": {}}}
                    },
                }
            },
            "/livez": {
                "get": {
                    "responses": {
                        "200": {"description": "alive", "content": {"application/json": {}}}
                    }
                }
            },
            "/readyz": {
                "get": {
                    "responses": {
                        "200": {"description": "ready", "content": _READINESS},
                        "503": {"description": "not ready", "content": _READINESS},
                    }
                }
            },
            **openapi_replication.paths(),
        },
    }
