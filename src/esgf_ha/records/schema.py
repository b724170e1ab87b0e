"""Field schema of ESGF index records, as the esg-search Solr schema defines it.

Every field of a record is either single-valued (a scalar in JSON) or multi-valued (a list),
and has a type that decides how it is stored, filtered and rendered. Clients depend on this
typing: `project[0]` on a bare string silently yields its first character.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime

from esgf_ha.records.errors import InvalidRecord
from esgf_ha.records.validate import check_field_name, check_float, check_int, check_text


class Kind(enum.Enum):
    STRING = "str"
    TEXT = "text"
    BOOL = "bool"
    INT = "int"
    LONG = "long"
    FLOAT = "float"
    DATE = "date"


CORES = ("Dataset", "File", "Aggregation")

_SINGLE: dict[str, Kind] = {
    "id": Kind.STRING,
    "title": Kind.STRING,
    "type": Kind.STRING,
    "version": Kind.STRING,
    "dataset_id": Kind.STRING,
    "master_id": Kind.STRING,
    "instance_id": Kind.STRING,
    "data_node": Kind.STRING,
    "index_node": Kind.STRING,
    "shard": Kind.STRING,
    "height_units": Kind.STRING,
    "metadata_format": Kind.STRING,
    "metadata_url": Kind.STRING,
    "metadata_file_name": Kind.STRING,
    "replica": Kind.BOOL,
    "latest": Kind.BOOL,
    "retracted": Kind.BOOL,
    "timestamp": Kind.DATE,
    "_timestamp": Kind.DATE,
    "datetime_start": Kind.DATE,
    "datetime_stop": Kind.DATE,
    "north_degrees": Kind.FLOAT,
    "south_degrees": Kind.FLOAT,
    "east_degrees": Kind.FLOAT,
    "west_degrees": Kind.FLOAT,
    "height_bottom": Kind.FLOAT,
    "height_top": Kind.FLOAT,
    "size": Kind.LONG,
    "_version_": Kind.LONG,
    "number_of_files": Kind.INT,
    "number_of_aggregations": Kind.INT,
}

_MULTI_TEXT = {"description"}

# Fields never offered by `facets=*` (esg-search 4.18 NOT_FACETS).
NOT_FACETS = frozenset(
    [
        "id",
        "master_id",
        "instance_id",
        "dataset_id",
        "dataset_id_template_",
        "drs_id",
        "datetime_start",
        "datetime_stop",
        "east_degrees",
        "west_degrees",
        "north_degrees",
        "south_degrees",
        "bbox",
        "lat",
        "lon",
        "radius",
        "polygon",
        "height_top",
        "height_bottom",
        "height_units",
        "latest",
        "replica",
        "retracted",
        "number_of_files",
        "number_of_aggregations",
        "tracking_id",
        "timestamp",
        "title",
        "description",
        "url",
        "xlink",
        "size",
        "text",
        "type",
        "variable_units",
        "geo",
        "geo_units",
        "_timestamp",
        "_version_",
        "score",
        "units",
        "pid",
        "citation_url",
        "further_info_url",
    ]
)


_KINDS: dict[str, Kind] = {}
_MULTI: dict[str, bool] = {}


def kind_of(name: str) -> Kind:
    """The type of a field; unknown names follow Solr's dynamic-field rules."""
    kind = _KINDS.get(name)
    if kind is None:
        kind = _KINDS[name] = _kind_of(name)
    return kind


def _kind_of(name: str) -> Kind:
    kind = _SINGLE.get(name)
    if kind is not None:
        return kind
    if name in _MULTI_TEXT:
        return Kind.TEXT
    if name.endswith("date") or name.startswith("date"):
        return Kind.DATE
    return Kind.STRING


def is_multi(name: str) -> bool:
    multi = _MULTI.get(name)
    if multi is None:
        multi = _MULTI[name] = name not in _SINGLE and not (
            name.endswith("date") or name.startswith("date")
        )
    return multi


_SOLR_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


_TRUE = {"true", "t", "1", "yes", "on"}


def parse_bool(value: object) -> bool:
    """Solr BoolField semantics: a value starting with t, T or 1 is true."""
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    return bool(text) and text[0] in "tT1"


def parse_date(value: object, field: str = "date") -> str:
    """Normalise a date to Solr's form `YYYY-MM-DDTHH:MM:SS[.mmm]Z`."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRecord(f"field {field!r}: {value!r} is not an ISO 8601 date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt = dt.astimezone(UTC)
    except OverflowError:
        raise InvalidRecord(
            f"field {field!r}: {value!r} is outside years 0001-9999 once converted to UTC"
        ) from None
    # by hand: strftime writes year 500 as "500", which is no longer a Solr date
    stamp = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    if dt.microsecond:
        return f"{stamp}.{dt.microsecond // 1000:03d}Z"
    return stamp + "Z"


def _is_solr_date(value: str) -> bool:
    """Already in Solr's form and a real calendar date (the pattern alone allows month 13)."""
    if not _SOLR_DATE.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return value[:4] != "0000"


def date_to_epoch(value: str) -> float:
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def normalize_value(name: str, value: object) -> object:
    """Coerce one field to its schema type; lists for multi-valued fields."""
    kind = kind_of(name)
    if is_multi(name):
        if isinstance(value, list) and all(type(v) is str for v in value):
            return [check_text(name, v) for v in value]
        items = value if isinstance(value, list | tuple) else [value]
        return [
            check_text(name, str(v)) if not isinstance(v, bool) else ("true" if v else "false")
            for v in items
        ]
    if kind is Kind.STRING and type(value) is str:
        return check_text(name, value)
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise InvalidRecord(f"field {name!r} is single-valued but has {len(value)} values")
        value = value[0]
    if kind is Kind.BOOL:
        return parse_bool(value)
    if kind in (Kind.INT, Kind.LONG):
        long = kind is Kind.LONG
        if type(value) is int and value >= 0:
            return check_int(name, value, long=long)
        text = str(value).strip()
        if len(text) > 24:  # int() of a huge digit string is slow; no valid value is longer
            raise InvalidRecord(f"field {name!r}: {text[:30]!r}... is too large for an integer")
        try:
            number = int(text)
        except ValueError:
            raise InvalidRecord(f"field {name!r}: {value!r} is not an integer") from None
        if number < 0 and name in ("size", "number_of_files", "number_of_aggregations"):
            raise InvalidRecord(f"field {name!r} must not be negative")
        return check_int(name, number, long=long)
    if kind is Kind.FLOAT:
        try:
            real = float(str(value).strip())
        except ValueError:
            raise InvalidRecord(f"field {name!r}: {value!r} is not a number") from None
        return check_float(name, real)
    if kind is Kind.DATE:
        if type(value) is str and _is_solr_date(value):
            return value
        return parse_date(value, name)
    return check_text(name, str(value))


def _skip(value: object) -> object:
    return value


_SKIP = _skip  # fields computed by the index, never stored: `score`, `text`
_NORMALIZERS: dict[str, Callable[[object], object]] = {"score": _SKIP, "text": _SKIP}
_MAX_NORMALIZERS = 10_000  # field names are open-ended; keep the cache bounded


def _normalizer(name: str) -> Callable[[object], object]:
    """normalize_value for one field, with a fast path for a value already in its type."""
    kind = kind_of(name)

    def slow(value: object) -> object:
        return normalize_value(name, value)

    fast: Callable[[object], object]
    if is_multi(name):

        def fast(value: object) -> object:
            if type(value) is list:
                for item in value:
                    if type(item) is not str or not item.isprintable():
                        return slow(value)
                return value
            return slow(value)

    elif kind is Kind.STRING:

        def fast(value: object) -> object:
            return value if type(value) is str and value.isprintable() else slow(value)

    elif kind is Kind.BOOL:

        def fast(value: object) -> object:
            return value if type(value) is bool else slow(value)

    elif kind is Kind.FLOAT:

        def fast(value: object) -> object:
            return value if type(value) is float and math.isfinite(value) else slow(value)

    elif kind in (Kind.INT, Kind.LONG):
        high = 2**63 if kind is Kind.LONG else 2**31

        def fast(value: object) -> object:
            return value if type(value) is int and 0 <= value < high else slow(value)

    elif kind is Kind.DATE:

        def fast(value: object) -> object:
            return value if type(value) is str and _is_solr_date(value) else slow(value)

    else:
        fast = slow
    if len(_NORMALIZERS) < _MAX_NORMALIZERS:
        _NORMALIZERS[name] = fast
    return fast


def normalize_record(raw: dict[str, object]) -> dict[str, object]:
    """Validate a record and return it with every field in its schema type.

    Mandatory fields follow esgf-publisher-resources' esgf.xml: id, title, type, data_node,
    index_node; `project` for datasets; `dataset_id` for files and aggregations.
    """
    if not isinstance(raw, dict):
        raise InvalidRecord("a record must be an object of field names to values")
    record: dict[str, object] = {}
    normalizers = _NORMALIZERS
    for name, value in raw.items():
        normalize = normalizers.get(name)
        if normalize is None:
            if not isinstance(name, str) or not name or len(name) > 200:
                raise InvalidRecord(f"invalid field name {name!r}")
            check_field_name(name)
            normalize = _normalizer(name)
        if normalize is _SKIP or value is None or value == [] or value == "":
            continue
        record[name] = normalize(value)
    for name in ("id", "type", "data_node", "index_node"):
        if name not in record:
            raise InvalidRecord(f"record {record.get('id', '?')!r} lacks mandatory field {name!r}")
    rtype = record["type"]
    if rtype not in CORES:
        raise InvalidRecord(f"record {record['id']!r}: type must be one of {', '.join(CORES)}")
    if "title" not in record:
        record["title"] = str(record["id"]).split("|", 1)[0]
    if rtype == "Dataset" and "project" not in record:
        raise InvalidRecord(f"dataset {record['id']!r} lacks mandatory field 'project'")
    if rtype != "Dataset" and "dataset_id" not in record:
        raise InvalidRecord(f"{rtype.lower()} {record['id']!r} lacks mandatory field 'dataset_id'")
    if "version" in record:
        version = str(record["version"])
        if not version.lstrip("v").isdigit():
            raise InvalidRecord(f"record {record['id']!r}: version {version!r} is not a number")
    urls = record.get("url", [])
    for url in urls if isinstance(urls, list) else [urls]:
        if str(url).count("|") != 2:
            raise InvalidRecord(
                f"record {record['id']!r}: url {url!r} is not of the form URL|MIME|SERVICE"
            )
    record.setdefault("latest", True)
    record.setdefault("replica", False)
    record.setdefault("retracted", False)
    return record


def version_number(version: object) -> int:
    """Versions compare numerically (esgcet compares none; we must not demote a newer one)."""
    text = str(version).lstrip("v")
    return int(text) if text.isdigit() else -1
