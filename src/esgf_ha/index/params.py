"""Turn the HTTP parameters of `/esg-search/search` and `/wget` into a SearchRequest.

Validation follows esg-search's BaseController: the same checks, in the same order, with the
same messages (esgf-pyclient greps `Invalid HTTP query parameter=<name>`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from esgf_ha.index import query as lucene
from esgf_ha.index.errors import BadRequest, InvalidParameter, UnsupportedFormat
from esgf_ha.index.openapi_schema import QueryParam
from esgf_ha.records.errors import InvalidRecord
from esgf_ha.records.schema import CORES, parse_bool, parse_date

KEYWORDS = frozenset(
    [
        "offset",
        "limit",
        "query",
        "format",
        "facets",
        "fields",
        "distrib",
        "shards",
        "from",
        "to",
        "sort",
    ]
)
CORE_QUERY_FIELDS = frozenset(
    [
        "id",
        "type",
        "replica",
        "retracted",
        "latest",
        "master_id",
        "instance_id",
        "drs_id",
        "title",
        "description",
        "timestamp",
        "url",
        "xlink",
        "size",
        "number_of_files",
        "number_of_aggregations",
        "dataset_id",
        "tracking_id",
        "access",
        "version",
        "max_version",
        "min_version",
        "checksum",
        "checksum_type",
        "data_node",
        "index_node",
        "bbox",
        "lat",
        "lon",
        "radius",
        "polygon",
        "start",
        "end",
        "download_structure",
        "download_emptypath",
    ]
)
UNSUPPORTED = frozenset({"lat", "lon", "location", "radius", "polygon"})
FORMATS = {"application/solr+xml": "xml", "application/solr+json": "json"}
MAX_LIMIT = 10_000
MAX_VALUES = 10_000
# Solr's `start` is a 32-bit int; beyond it no index holds records anyway
MAX_OFFSET = 2**31 - 1
# an integer parameter longer than this is refused before it is converted
_MAX_INT_DIGITS = 19

_BOOL_WORDS = {"true", "false", "on", "off", "yes", "no", "1", "0"}


@dataclass
class SearchRequest:
    type: str = "Dataset"
    query: lucene.Node = field(default_factory=lucene.MatchAll)
    query_text: str | None = None
    offset: int = 0
    limit: int = 10
    format: str = "xml"
    facets: list[str] | None = None
    fields: list[str] | None = None
    distrib: bool = True
    shards: str | None = None
    from_: str | None = None
    to: str | None = None
    sort: bool = False
    constraints: dict[str, list[str]] = field(default_factory=dict)
    negations: dict[str, list[str]] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)  # latest, replica, retracted
    flag_text: dict[str, str] = field(default_factory=dict)
    start: str | None = None
    end: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    min_version: str | None = None
    max_version: str | None = None
    download_structure: list[str] = field(default_factory=list)
    download_emptypath: str | None = None


def split_values(value: str) -> list[str]:
    """Split a comma list, keeping a comma inside one (), [] or {} pair (`CESM1(CAM5.1,FV2)`)."""
    pieces = re.split(r"\s*,\s*", value.strip())
    out: list[str] = []
    for piece in pieces:
        if out and _unbalanced(out[-1]):
            out[-1] = out[-1] + "," + piece
        else:
            out.append(piece)
    return [p for p in out if p != ""]


def _unbalanced(text: str) -> bool:
    return any(text.count(o) > text.count(c) for o, c in ("()", "[]", "{}"))


def _int(name: str, value: str, high: int) -> int:
    text = value.strip()
    if len(text.lstrip("+-").lstrip("0")) > _MAX_INT_DIGITS:
        raise BadRequest(f"Invalid value for parameter={name}: must be at most {high}")
    try:
        number = int(text)
    except ValueError:
        raise BadRequest(
            f"Invalid value for parameter={name}: {value!r} is not an integer"
        ) from None
    if number < 0:
        raise BadRequest(f"Invalid value for parameter={name}: must not be negative")
    if number > high:
        raise BadRequest(f"Invalid value for parameter={name}: must be at most {high}")
    return number


def _bool(name: str, value: str) -> bool:
    if value.strip().lower() not in _BOOL_WORDS:
        raise BadRequest(f"Invalid value for parameter={name}: {value!r} is not a boolean")
    return value.strip().lower() in ("true", "on", "yes", "1")


def _check_names(params: Sequence[tuple[str, str]], allowed: AbstractSet[str]) -> None:
    """Every name known and every value given, before any is read (esg-search's order)."""
    for name, value in params:
        if value == "":
            raise BadRequest(f"Invalid empty value for parameter={name}")
        base = name[:-1] if name.endswith("!") else name
        if base not in allowed:
            raise InvalidParameter(base)


Setter = Callable[[SearchRequest, QueryParam, str], None]


def _set_offset(req: SearchRequest, p: QueryParam, value: str) -> None:
    req.offset = _int(p.name, value, MAX_OFFSET)


def _set_limit(req: SearchRequest, p: QueryParam, value: str) -> None:
    # read up to MAX_OFFSET first, so a limit past the page size gets esg-search's own message
    req.limit = _int(p.name, value, MAX_OFFSET)
    if req.limit > MAX_LIMIT:
        raise BadRequest(f"Too many records requested, maximum allowed value is limit={MAX_LIMIT}")


def _set_format(req: SearchRequest, p: QueryParam, value: str) -> None:
    if value not in p.choices:
        raise UnsupportedFormat(f"Invalid requested format: {value}")
    req.format = FORMATS[value]


def _set_type(req: SearchRequest, p: QueryParam, value: str) -> None:
    if value not in p.choices:
        raise BadRequest(
            f"Invalid value for parameter=type: {value!r} (one of {', '.join(p.choices)})"
        )
    req.type = value


def _set_query(req: SearchRequest, p: QueryParam, value: str) -> None:
    req.query_text = value if req.query_text is None else f"({req.query_text}) AND ({value})"


def _set_names(req: SearchRequest, p: QueryParam, value: str) -> None:
    setattr(req, p.name, [f for f in (part.strip() for part in value.split(",")) if f])


def _set_bool(req: SearchRequest, p: QueryParam, value: str) -> None:
    setattr(req, p.name, _bool(p.name, value))


def _set_flag(req: SearchRequest, p: QueryParam, value: str) -> None:
    req.flags[p.name] = parse_bool(value)
    req.flag_text[p.name] = value


def _set_date(req: SearchRequest, p: QueryParam, value: str) -> None:
    setattr(req, "from_" if p.name == "from" else p.name, _date_param(p.name, value))


def _set_text(req: SearchRequest, p: QueryParam, value: str) -> None:
    setattr(req, p.name, value)


def _set_bbox(req: SearchRequest, p: QueryParam, value: str) -> None:
    req.bbox = _bbox(value)


def _set_structure(req: SearchRequest, p: QueryParam, value: str) -> None:
    req.download_structure = split_values(value)


@dataclass(frozen=True)
class SearchParam:
    """A named search parameter: how it is read, and (through `doc`) how OpenAPI shows it.

    `first_only`: later repeats are ignored, as esg-search does; `flag`: a negated `name!=`
    is a constraint on the field like any facet's."""

    doc: QueryParam
    apply: Setter
    first_only: bool = False
    flag: bool = False


# Values at the edges of what a date parameter can hold: the fuzzer tries these examples
_DATE_EXAMPLES = (
    "2020-01-01T00:00:00Z",
    "NOW-1DAY",
    "NOW+10000YEARS",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
)


def _date(name: str, description: str) -> SearchParam:
    return SearchParam(QueryParam(name, "string", description, examples=_DATE_EXAMPLES), _set_date)


def _boolean(name: str, description: str, setter: Setter = _set_bool) -> SearchParam:
    flag = setter is _set_flag
    return SearchParam(QueryParam(name, "boolean", description), setter, first_only=flag, flag=flag)


def _string(name: str, description: str, setter: Setter = _set_text) -> SearchParam:
    return SearchParam(QueryParam(name, "string", description), setter)


# Every named parameter of `/esg-search/search` and `/wget`, in the order OpenAPI lists them;
# any other known name is a field constraint (`project=CMIP6`)
SEARCH_PARAMS: dict[str, SearchParam] = {
    p.doc.name: p
    for p in (
        SearchParam(QueryParam("type", "string", "record type", choices=CORES), _set_type, True),
        SearchParam(QueryParam("format", "string", "response format", choices=tuple(FORMATS)),
                    _set_format),
        SearchParam(
            QueryParam("query", "string", "Lucene query", examples=(
                "datetime_start:[0001-01-01T00:00:00+01:00 TO *]", "*a*b*c*", "tas OR pr")),
            _set_query,
        ),
        SearchParam(QueryParam("offset", "integer", "first record", 0, MAX_OFFSET), _set_offset),
        SearchParam(QueryParam("limit", "integer", "page size", 0, MAX_LIMIT), _set_limit),
        _string("facets", "comma list of facets, or *", _set_names),
        _string("fields", "comma list of fields, or *", _set_names),
        _boolean("distrib", "accepted for compatibility"),
        _string("shards", "accepted for compatibility"),
        _boolean("latest", "latest versions only", _set_flag),
        _boolean("replica", "replicas (true) or masters (false)", _set_flag),
        _boolean("retracted", "retracted or not", _set_flag),
        _string("min_version", "lowest version"),
        _string("max_version", "highest version"),
        _date("start", "data coverage ends after (ISO date)"),
        _date("end", "data coverage starts before (ISO date)"),
        _date("from", "indexed after (ISO date or NOW-1DAY)"),
        _date("to", "indexed before"),
        _string("bbox", "[west,south,east,north]", _set_bbox),
        _boolean("sort", "newest first"),
        _string("download_structure", "wget: comma list of fields naming the directories",
                _set_structure),
        _string("download_emptypath", "wget: directory for files a field is missing from"),
    )
}  # fmt: skip
# facet constraints OpenAPI shows as examples of the rest (the fuzzer tries them)
FACET_EXAMPLES = (
    QueryParam("project", "string", "facet constraint"),
    QueryParam("variable_id", "string", "facet constraint"),
)


def _apply(req: SearchRequest, base: str, value: str, negate: bool, first: bool) -> None:
    """One parameter into the request; `first`: the first time this name was given."""
    if base in UNSUPPORTED:
        raise BadRequest(f"Unsupported parameter: {base}")
    param = SEARCH_PARAMS.get(base)
    if param is None or (negate and param.flag):
        target = req.negations if negate else req.constraints
        values = split_values(value)
        for v in values:
            if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = v[1:-1]
            target.setdefault(base, []).append(v)
    elif first or not param.first_only:
        param.apply(req, param.doc, value)


def parse_search(
    params: Sequence[tuple[str, str]],
    known_fields: Iterable[str],
    *,
    wget: bool = False,
) -> SearchRequest:
    # known_fields: the configured facets and every field a record holds (esg-search's profile)
    allowed = KEYWORDS | CORE_QUERY_FIELDS | set(known_fields)
    req = SearchRequest()
    if wget:
        req.limit = 1000
    if len(params) > MAX_VALUES:
        raise BadRequest(f"Too many parameters: at most {MAX_VALUES} are accepted")
    _check_names(params, allowed)
    seen: set[str] = set()
    for name, value in params:
        negate = name.endswith("!")
        base = name[:-1] if negate else name
        first = base not in seen
        seen.add(base)
        _apply(req, base, value, negate, first)
    if wget and req.type != "File" and any(n == "type" for n, _ in params):
        raise BadRequest("HTTP parameter type should be fixed to value: 'File'")
    if wget:
        req.type = "File"
        if req.format == "json" and any(n == "format" for n, _ in params):
            raise BadRequest("HTTP parameter format is not supported by the wget service")
    if req.query_text is not None:
        req.query = lucene.parse(req.query_text)
    return req


def _bbox(value: str) -> tuple[float, float, float, float]:
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise BadRequest("Invalid value for parameter=bbox: use [west,south,east,north]")
    try:
        west, south, east, north = (float(p) for p in text[1:-1].split(","))
    except ValueError:
        raise BadRequest("Invalid value for parameter=bbox: use [west,south,east,north]") from None
    return west, south, east, north


def _date_param(name: str, value: str) -> str:
    try:
        resolve_date(value)
    except InvalidRecord:
        raise BadRequest(
            f"Invalid value for parameter={name}: {value[:80]!r} is not an ISO 8601 date "
            "(YYYY-MM-DDTHH:MM:SSZ) or date math such as NOW-1DAY"
        ) from None
    except BadRequest as exc:
        raise BadRequest(f"Invalid value for parameter={name}: {exc.message}") from None
    return value


_DATEMATH = re.compile(
    r"^NOW(?P<ops>([+-]\d+(YEARS?|MONTHS?|DAYS?|HOURS?|MINUTES?|SECONDS?))*)(/(?P<round>DAY|HOUR|MINUTE|SECOND|YEAR|MONTH))?$"
)
_UNITS = {
    "YEAR": 365 * 86400,
    "MONTH": 30 * 86400,
    "DAY": 86400,
    "HOUR": 3600,
    "MINUTE": 60,
    "SECOND": 1,
}


def resolve_date(value: str) -> str:
    """An ISO date, or Solr date math relative to NOW (`NOW-1DAY`, `NOW/DAY`).

    A date that falls outside years 1..9999 once moved to UTC (date math far from NOW, or
    `0001-01-01T00:00:00+01:00`) is a BadRequest: Python's datetime cannot hold it."""
    text = value.strip()
    if len(text) > _MAX_DATE_LENGTH:
        raise BadRequest(f"date {text[:40]!r}… is longer than {_MAX_DATE_LENGTH} characters")
    try:
        return _resolve(text)
    except (OverflowError, ValueError):
        raise BadRequest(f"date {text[:80]!r} falls outside the years 1 to 9999 (UTC)") from None


_MAX_DATE_LENGTH = 200


def _resolve(text: str) -> str:
    m = _DATEMATH.match(text)
    if not m:
        return parse_date(text)
    now = datetime.now(UTC)
    for sign, amount, unit in re.findall(r"([+-])(\d+)([A-Z]+?)S?(?=[+-]|$)", m.group("ops") or ""):
        delta = timedelta(seconds=int(amount) * _UNITS[unit.rstrip("S")])
        now = now + delta if sign == "+" else now - delta
    rnd = m.group("round")
    if rnd == "DAY":
        now = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elif rnd == "HOUR":
        now = now.replace(minute=0, second=0, microsecond=0)
    return parse_date(now)
