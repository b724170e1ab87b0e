"""Errors of a parsed search in the format it asked for, shaped as Solr's error responses.

A search that was understood but could not finish (its time limit) is answered in the
requested format, so a client reading Solr JSON or XML finds `error.msg` and `error.code`
where Solr puts them, with `Retry-After`; parameter errors keep esg-search's HTML pages.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import orjson
from starlette.responses import Response

from esgf_ha.index.errors import IndexServiceError
from esgf_ha.index.render import JSON_TYPE, XML_TYPE


def error_response(fmt: str, exc: IndexServiceError) -> Response:
    status = exc.status
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if fmt == "json":
        body = orjson.dumps(
            {"responseHeader": {"status": status}, "error": {"msg": exc.message, "code": status}}
        )
        return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<response>\n<lst name="responseHeader">'
        f'<int name="status">{status}</int></lst>\n<lst name="error">'
        f'<str name="msg">{escape(exc.message)}</str><int name="code">{status}</int></lst>\n'
        "</response>\n"
    )
    return Response(xml, status_code=status, media_type=XML_TYPE, headers=headers)
