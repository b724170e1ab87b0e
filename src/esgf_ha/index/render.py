"""Render search results as esg-search does: Solr JSON (`application/solr+json`) or Solr XML.

`responseHeader.params` echoes the Solr request esg-search would have built (clients read
`shards` from it), every facet is a flat `[value, count, ...]` list in lexical order, and
fields keep Solr typing: multi-valued fields are arrays, single-valued ones scalars.
"""

from __future__ import annotations

import json
import math
from xml.sax.saxutils import escape, quoteattr

import orjson

from esgf_ha.index.engine import SearchResult
from esgf_ha.index.params import SearchRequest
from esgf_ha.records.schema import Kind, is_multi, kind_of
from esgf_ha.records.validate import xml_safe

CORE_NAMES = {"Dataset": "datasets", "File": "files", "Aggregation": "aggregations"}
JSON_TYPE = "text/json;charset=UTF-8"
XML_TYPE = "text/xml;charset=UTF-8"


def _quote(value: str) -> str:
    return value if len(value) >= 2 and value[0] == '"' and value[-1] == '"' else f'"{value}"'


def solr_params(req: SearchRequest, host: str, qtime_fields: bool = True) -> dict[str, object]:
    """The Solr parameters esg-search's SolrUrlBuilder would send for this request."""
    q_parts = [req.query_text] if req.query_text else []
    if req.from_ or req.to:
        q_parts.append(f"_timestamp:[{req.from_ or '*'} TO {req.to or '*'}]")
    if req.start:
        q_parts.append(f"datetime_stop:[{req.start} TO *]")
    if req.end:
        q_parts.append(f"datetime_start:[* TO {req.end}]")
    if req.bbox:
        w, s, e, n = req.bbox
        q_parts.append(
            f"east_degrees:[{w} TO *] AND north_degrees:[{s} TO *] AND "
            f"west_degrees:[* TO {e}] AND south_degrees:[* TO {n}]"
        )
    if req.min_version:
        q_parts.append(f"version:[{req.min_version} TO *]")
    if req.max_version:
        q_parts.append(f"version:[* TO {req.max_version}]")
    fq = [f"type:{req.type}"]
    for name, text in req.flag_text.items():
        fq.append(f"{name}:{text}")
    for name, values in req.constraints.items():
        fq.append(" || ".join(f"{name}:{_quote(v)}" for v in values))
    for name, values in req.negations.items():
        fq.extend(f"-{name}:{_quote(v)}" for v in values)
    params: dict[str, object] = {
        "df": "text",
        "q.alt": "*:*",
        "indent": "true",
        "echoParams": "all",
        "fl": ",".join(req.fields) + ",score" if req.fields and req.fields != ["*"] else "*,score",
        "start": str(req.offset),
        "rows": str(req.limit),
        "q": " AND ".join(q_parts) if q_parts else "*:*",
        "fq": fq if len(fq) > 1 else fq[0],
        "tie": "0.01",
        "facet.limit": "-1",
        "qf": "text",
        "facet.method": "enum",
        "facet.mincount": "1",
        "wt": req.format,
        "facet": "true",
        "facet.sort": "lex",
    }
    if req.facets:
        names = req.facets
        params["facet.field"] = names if len(names) > 1 else names[0]
    if req.distrib:
        params["shards"] = req.shards or f"{host}/solr/{CORE_NAMES[req.type]}"
    if req.sort:
        params["sort"] = "_timestamp desc"
    elif req.type == "File":
        params["sort"] = "id asc"
    return params


def project(doc: dict[str, object], fields: list[str] | None) -> dict[str, object]:
    out = {k: doc[k] for k in fields if k in doc} if fields and "*" not in fields else dict(doc)
    out["score"] = 1.0
    return out


def render_json(
    req: SearchRequest, result: SearchResult, docs: list[dict[str, object]], host: str, qtime: int
) -> bytes:
    body = {
        "responseHeader": {"status": 0, "QTime": qtime, "params": solr_params(req, host)},
        "response": {
            "numFound": result.total,
            "start": req.offset,
            "maxScore": 1.0,
            "docs": [project(d, req.fields) for d in docs],
        },
        "facet_counts": {
            "facet_queries": {},
            "facet_fields": {
                name: result.facets[name].flat() if name in result.facets else []
                for name in result.facet_names
            },
            "facet_ranges": {},
            "facet_intervals": {},
            "facet_heatmaps": {},
        },
    }
    raw = orjson.dumps(body)
    if not raw.isascii():
        # esgpull decodes as latin-1: keep the body ASCII so every client reads the same text
        raw = json.dumps(orjson.loads(raw), ensure_ascii=True, separators=(",", ":")).encode()
    return raw


def _xml_value(kind: Kind, value: object) -> tuple[str, str] | None:
    """The element and text of one value; None for a value its type cannot show (a number
    stored as null or text by a version that did not check), which is then left out."""
    if kind is Kind.BOOL:
        return "bool", "true" if value else "false"
    if kind in (Kind.INT, Kind.LONG):
        if type(value) is not int:
            return None
        return ("int" if kind is Kind.INT else "long"), str(value)
    if kind is Kind.FLOAT:
        if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
            return None
        return "float", repr(float(value))  # type: ignore[arg-type]
    if value is None:
        return None
    if kind is Kind.DATE:
        return "date", xml_safe(str(value))
    return "str", xml_safe(str(value))


def _xml_field(name: str, value: object) -> str:
    kind = Kind.FLOAT if name == "score" else kind_of(name)
    label = quoteattr(xml_safe(name))
    if is_multi(name) and name != "score":
        items = value if isinstance(value, list) else [value]
        shown = [v for v in (_xml_value(kind, i) for i in items) if v is not None]
        inner = "".join(f"<{t}>{escape(v)}</{t}>" for t, v in shown)
        return f"<arr name={label}>{inner}</arr>"
    got = _xml_value(kind, value)
    if got is None:
        return ""
    tag, text = got
    return f"<{tag} name={label}>{escape(text)}</{tag}>"


def _xml_param(name: str, value: object) -> str:
    if isinstance(value, list):
        inner = "".join(f"<str>{escape(xml_safe(str(v)))}</str>" for v in value)
        return f"<arr name={quoteattr(name)}>{inner}</arr>"
    return f"<str name={quoteattr(name)}>{escape(xml_safe(str(value)))}</str>"


def render_xml(
    req: SearchRequest, result: SearchResult, docs: list[dict[str, object]], host: str, qtime: int
) -> bytes:
    params = "".join(_xml_param(k, v) for k, v in solr_params(req, host).items())
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<response>\n',
        f'<lst name="responseHeader"><int name="status">0</int><int name="QTime">{qtime}</int>',
        f'<lst name="params">{params}</lst></lst>\n',
        f'<result name="response" numFound="{result.total}" start="{req.offset}" maxScore="1.0">',
    ]
    for doc in docs:
        fields = "".join(_xml_field(k, v) for k, v in project(doc, req.fields).items())
        parts.append(f"<doc>{fields}</doc>")
    parts.append('</result>\n<lst name="facet_counts"><lst name="facet_queries"/>')
    parts.append('<lst name="facet_fields">')
    for name in result.facet_names:
        counts = "".join(
            f"<int name={quoteattr(xml_safe(v))}>{c}</int>" for v, c in result.facets.get(name, [])
        )
        parts.append(f"<lst name={quoteattr(xml_safe(name))}>{counts}</lst>")
    parts.append(
        '</lst><lst name="facet_ranges"/><lst name="facet_intervals"/>'
        '<lst name="facet_heatmaps"/></lst>\n</response>\n'
    )
    return "".join(parts).encode("utf-8", "xmlcharrefreplace")
