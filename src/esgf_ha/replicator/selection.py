"""What a site replicates: a Synda-style selection file or a search query string, turned into
esg-search parameters.

Selection file lines (Synda's form):

    # CMIP6 monthly surface temperature
    project=CMIP6
    variable_id=tas pr          (several values: OR)
    experiment_id!=piControl    (negation)
    source_id=CESM2,MIROC6      (commas work too)

Keys are search facets; `type`, `latest` and paging are ours to set and refused here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from esgf_ha.replicator.errors import SelectionError

RESERVED = frozenset(
    "type latest offset limit format facets fields distrib shards sort replica retracted".split()
)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Constraint:
    name: str
    values: tuple[str, ...]
    negated: bool = False

    def params(self) -> list[tuple[str, str]]:
        key = f"{self.name}!" if self.negated else self.name
        return [(key, v) for v in self.values]


@dataclass(frozen=True)
class Selection:
    constraints: tuple[Constraint, ...]

    def params(self) -> list[tuple[str, str]]:
        return [p for c in self.constraints for p in c.params()]

    def describe(self) -> str:
        return " ".join(
            f"{c.name}{'!=' if c.negated else '='}{','.join(c.values)}" for c in self.constraints
        )


def _constraint(key: str, raw: str, where: str) -> Constraint:
    negated = key.endswith("!")
    name = key.rstrip("!").strip()
    if not _KEY.match(name):
        raise SelectionError(f"{where}: {name!r} is not a facet name")
    if name in RESERVED:
        raise SelectionError(f"{where}: {name!r} is set by the replicator, not the selection")
    values = tuple(v for v in re.split(r"[\s,]+", raw.strip()) if v)
    if not values:
        raise SelectionError(f"{where}: {name} has no value")
    return Constraint(name, values, negated)


def parse_selection_text(text: str, source: str = "selection") -> Selection:
    constraints = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SelectionError(f"{source}:{number}: expected facet=value, got {line!r}")
        constraints.append(_constraint(key, value, f"{source}:{number}"))
    if not constraints:
        raise SelectionError(f"{source}: selects nothing (no facet=value line)")
    return Selection(tuple(constraints))


def parse_selection_file(path: Path) -> Selection:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SelectionError(f"cannot read {path}: {exc.strerror}") from None
    return parse_selection_text(text, str(path))


def parse_query(query: str) -> Selection:
    """`project=CMIP6&variable_id=tas&variable_id=pr&experiment_id!=piControl`."""
    merged: dict[tuple[str, bool], list[str]] = {}
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True, strict_parsing=False)
    if not pairs:
        raise SelectionError("--query selects nothing (expected facet=value&…)")
    for key, value in pairs:
        c = _constraint(key, value, "--query")
        merged.setdefault((c.name, c.negated), []).extend(c.values)
    return Selection(tuple(Constraint(n, tuple(v), neg) for (n, neg), v in merged.items()))
