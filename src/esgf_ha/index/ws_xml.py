"""The XML bodies of esg-search's `/ws/*` publishing service, as esgcet sends them.

Parsing goes through defusedxml: DTDs, entity expansion and external entities are refused.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml
from defusedxml import ElementTree

from esgf_ha.index.errors import BadRequest


def _parse(body: bytes) -> Element:
    if not body.strip():
        raise BadRequest("empty request body: expected an XML document")
    try:
        return ElementTree.fromstring(body, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise BadRequest(
            f"XML refused: {type(exc).__name__} (DTDs and entities are not allowed)"
        ) from None
    except ElementTree.ParseError as exc:
        raise BadRequest(f"invalid XML: {exc}") from None


def parse_record(body: bytes) -> dict[str, object]:
    """`<doc><field name="id">…</field>…</doc>` → a record (repeated fields become lists)."""
    root = _parse(body)
    record: dict[str, object] = {}
    for el in root:
        if el.tag != "field":
            continue
        name = el.get("name")
        if not name:
            raise BadRequest("a <field> element lacks its name attribute")
        value = (el.text or "").strip()
        if name in record:
            prior = record[name]
            record[name] = [*prior, value] if isinstance(prior, list) else [prior, value]
        else:
            record[name] = value
    if not record:
        raise BadRequest("the XML document holds no <field name=…> elements")
    return record


def parse_updates(
    body: bytes,
) -> tuple[str, str, list[tuple[list[tuple[str, str]], dict[str, list[str]]]]]:
    """`<updates core= action=><update><query>k=v&k2=v2</query><field name=><value>…` ."""
    root = _parse(body)
    if root.tag != "updates":
        raise BadRequest("the root element must be <updates>")
    core = root.get("core") or ""
    action = root.get("action") or ""
    updates = []
    for upd in root.findall("update"):
        query_el = upd.find("query")
        query_text = (query_el.text or "").strip() if query_el is not None else ""
        query: list[tuple[str, str]] = []
        for part in query_text.split("&"):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name:
                raise BadRequest(
                    f"invalid update query {query_text!r}: use name=value[&name=value]"
                )
            query.append((name.strip(), value.strip()))
        fields: dict[str, list[str]] = {}
        for field in upd.findall("field"):
            fname = field.get("name")
            if not fname:
                raise BadRequest("a <field> element lacks its name attribute")
            fields[fname] = [(v.text or "").strip() for v in field.findall("value")]
        updates.append((query, fields))
    if not updates:
        raise BadRequest("no <update> elements in the document")
    return core, action, updates


def status_document(ok: bool, messages: list[str]) -> bytes:
    status = "success" if ok else "error"
    inner = "".join(f"<message>{escape(m)}</message>" for m in messages)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><response status="{status}">{inner}</response>'
    ).encode()
