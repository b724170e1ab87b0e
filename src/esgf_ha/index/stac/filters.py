"""CQL2 filters (text and JSON) as the engine's constraints and Lucene query nodes.

The `cql2` library parses and validates both encodings into CQL2 JSON; this module walks that
tree. The supported subset is Basic CQL2 plus the advanced comparison operators: `AND`, `OR`,
`NOT`, `=`, `<>`, `<`, `<=`, `>`, `>=`, `IS NULL`, `IN`, `LIKE` and `BETWEEN` over record fields
(facets, `latest`, `retracted`, `replica`, dates and numbers). Anything else — spatial and
temporal operators, functions, arithmetic, property-to-property comparisons — is a 400 naming
what was not understood.

Top-level `AND`ed equalities on facets and flags become plain constraints (the engine's fast
path, the same as `variable_id=tas&latest=true` on esg-search); the rest becomes a Lucene tree
the engine evaluates as it does esg-search's `query`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cql2
import orjson

from esgf_ha.index import query as lucene
from esgf_ha.index.errors import BadRequest
from esgf_ha.index.stac.vocabulary import ABSENT, FLAGS, field_of

MAX_FILTER_CHARS = 20_000
MAX_NODES = 2_000
MAX_DEPTH = 40

_SUPPORTED = frozenset({"=", "<>", "<", "<=", ">", ">=", "in", "between", "like", "isNull"})
_COMPARISONS = {"<": (False, None), "<=": (True, None), ">": (None, False), ">=": (None, True)}


@dataclass
class Filter:
    constraints: dict[str, list[str]] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)
    query: lucene.Node = field(default_factory=lucene.MatchAll)
    fields: set[str] = field(default_factory=set)  # every record field the filter names


def parse(value: object, lang: str | None) -> dict[str, object]:
    """A filter as given (cql2-text string, cql2-json string or object) → CQL2 JSON."""
    try:
        if isinstance(value, dict):
            text = orjson.dumps(value).decode()
            if len(text) > MAX_FILTER_CHARS:
                raise BadRequest(f"filter is longer than {MAX_FILTER_CHARS} characters")
            return dict(cql2.parse_json(text).to_json())
        if not isinstance(value, str):
            raise BadRequest("filter must be a CQL2 text string or a CQL2 JSON object")
        if len(value) > MAX_FILTER_CHARS:
            raise BadRequest(f"filter is longer than {MAX_FILTER_CHARS} characters")
        if lang == "cql2-json" or (lang is None and value.lstrip().startswith("{")):
            return dict(cql2.parse_json(value).to_json())
        if lang not in (None, "cql2-text"):
            raise BadRequest(f"unsupported filter-lang {lang!r}: use cql2-text or cql2-json")
        return dict(cql2.parse_text(value).to_json())
    except (cql2.ParseError, cql2.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise BadRequest(f"invalid CQL2 filter: {' '.join(s.strip() for s in first)}") from None


def translate(
    expr: dict[str, object], known: set[str], collection_project: Callable[[str], str]
) -> Filter:
    """CQL2 JSON → constraints, flags and a Lucene tree. `collection_project` maps a
    collection id to its project (so `collection = 'cmip6'` filters `project=CMIP6`)."""
    walker = _Walker(known, collection_project)
    out = Filter()
    rest: list[lucene.Node] = []
    args = expr.get("args")
    conjuncts = args if expr.get("op") == "and" and isinstance(args, list) else [expr]
    for item in conjuncts:
        if not walker.plain(item, out):
            rest.append(walker.node(item, 1))
    out.fields = walker.fields
    if len(rest) == 1:
        out.query = rest[0]
    elif rest:
        out.query = lucene.Bool(must=tuple(rest))
    return out


class _Walker:
    def __init__(self, known: set[str], collection_project: Callable[[str], str]) -> None:
        self.known = known
        self.collection_project = collection_project
        self.fields: set[str] = set()
        self.count = 0

    def plain(self, item: object, out: Filter) -> bool:
        """Record a top-level `field = literal` or `field IN (...)` as a constraint."""
        if not isinstance(item, dict) or item.get("op") not in ("=", "in"):
            return False
        args = item.get("args")
        if not isinstance(args, list) or len(args) != 2 or not _is_property(args[0]):
            return False
        name = self.field(args[0])
        if name.startswith(ABSENT):
            return False
        values = args[1] if item["op"] == "in" else [args[1]]
        if not isinstance(values, list) or not values:
            return False
        if name in FLAGS:
            if len(values) != 1 or not isinstance(values[0], bool) or name in out.flags:
                return False
            out.flags[name] = values[0]
            return True
        if name == "id" or any(isinstance(v, bool | dict | list) for v in values):
            return False
        if name in out.constraints:
            return False  # two constraints on one field are an intersection, not a union
        texts = [self.literal(v) for v in values]
        if name == "collection":
            name, texts = "project", [self.collection_project(t) for t in texts]
        out.constraints[name] = texts
        return True

    def field(self, prop: object) -> str:
        assert isinstance(prop, dict)
        name = prop.get("property")
        if not isinstance(name, str):
            raise BadRequest("a CQL2 property must be a string")
        resolved = field_of(name, self.known)
        self.fields.add(resolved)
        return resolved

    def literal(self, value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(int(value)) if float(value).is_integer() else repr(float(value))
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            for key in ("timestamp", "date"):
                if isinstance(value.get(key), str):
                    return str(value[key])
        raise BadRequest(f"unsupported CQL2 value {orjson.dumps(value).decode()[:200]}")

    def node(self, item: object, depth: int) -> lucene.Node:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            raise BadRequest(f"filter too large: at most {MAX_NODES} terms, {MAX_DEPTH} levels")
        if not isinstance(item, dict) or "op" not in item:
            raise BadRequest("the filter must be a boolean expression")
        op = str(item["op"])
        args = item.get("args")
        if not isinstance(args, list):
            raise BadRequest(f"CQL2 operator {op!r} needs a list of arguments")
        if op in ("and", "or"):
            children = tuple(self.node(a, depth + 1) for a in args)
            return lucene.Bool(must=children) if op == "and" else lucene.Bool(should=children)
        if op == "not":
            return lucene.Bool(must_not=(self.node(args[0], depth + 1),))
        if op not in _SUPPORTED:
            raise BadRequest(
                f"unsupported CQL2 operator {op!r}: this API supports AND, OR, NOT, =, <>, <, "
                "<=, >, >=, IS NULL, IN, LIKE and BETWEEN over properties"
            )
        if not args or not _is_property(args[0]):
            raise BadRequest(
                f"unsupported CQL2 expression with {op!r}: the left side must be a property "
                "and the right side literals"
            )
        name = self.field(args[0])
        if name.startswith(ABSENT):
            # no item has it: every comparison is unknown (false), IS NULL is true
            return lucene.MatchAll() if op == "isNull" else lucene.Term(name, "")
        if op == "isNull":
            return lucene.Bool(must_not=(self._exists(name),))
        if len(args) < 2 or any(_is_property(a) for a in args[1:]):
            raise BadRequest(f"unsupported CQL2 expression with {op!r}: compare with literals")
        if op == "=":
            return self._equal(name, args[1])
        if op == "<>":
            return lucene.Bool(must=(self._exists(name),), must_not=(self._equal(name, args[1]),))
        if op == "in":
            values = args[1]
            if not isinstance(values, list) or not values:
                raise BadRequest("CQL2 IN needs a non-empty list of values")
            return lucene.Bool(should=tuple(self._equal(name, v) for v in values))
        if op in _COMPARISONS:
            value = self.literal(args[1])
            inc_high, inc_low = _COMPARISONS[op]
            if inc_high is not None:
                return lucene.Range(name, None, value, True, inc_high)
            return lucene.Range(name, value, None, bool(inc_low), True)
        if op == "between":
            if len(args) != 3:
                raise BadRequest("CQL2 BETWEEN needs a low and a high value")
            return lucene.Range(name, self.literal(args[1]), self.literal(args[2]))
        if op == "like":
            pattern = self.literal(args[1])
            if any(c in pattern for c in "*?\\"):
                raise BadRequest("LIKE patterns with '*', '?' or escapes are not supported")
            wild = pattern.replace("%", "*").replace("_", "?")
            return lucene.Term(name, wild, wildcard=wild != pattern)
        raise AssertionError(op)

    def _exists(self, name: str) -> lucene.Node:
        return lucene.Range(self._record_field(name), None, None)

    def _equal(self, name: str, value: object) -> lucene.Node:
        text = self.literal(value)
        if name == "collection":
            return lucene.Term("project", self.collection_project(text))
        if name == "id":
            return id_node(text)
        return lucene.Term(name, text)

    @staticmethod
    def _record_field(name: str) -> str:
        return {"collection": "project", "id": "instance_id"}.get(name, name)


def id_node(item_id: str) -> lucene.Node:
    """The record an item id names: a replica record by its esg-search id
    (`instance_id|data_node`), an original by its instance_id."""
    if "|" in item_id:
        return lucene.Term("id", item_id)
    return lucene.Bool(must=(lucene.Term("instance_id", item_id), lucene.Term("replica", "false")))


def _is_property(value: object) -> bool:
    return isinstance(value, dict) and "property" in value
