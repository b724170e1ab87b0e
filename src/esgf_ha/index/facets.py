"""The facet profile: which facets each project offers, as an index operator configures them.

The profile answers two questions. Which names may a search constrain before any published
record carries them (a new project's `driving_experiment_id` answers 0 hits, not 400)? And what
does `facets=*` expand to (the configured list, not every field records happen to hold)?

Built-in lists cover the projects ESGF publishes most; a TOML file named by the index's
`--facets-file` adds projects or replaces a project's list:

    common = ["project", "data_node"]          # optional: offered for every project
    default = ["institute", "model"]           # optional: for projects without a list
    builtin = true                             # optional: false drops the built-in lists
    star = "configured"                        # optional: "fields" for esg-search's Luke list

    [projects]
    CORDEX-CMIP6 = ["domain_id", "driving_source_id", "driving_experiment_id", "source_id"]
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Offered whatever the project.
COMMON_FACETS = ("project", "data_node")
# For a project without its own list: the list the esg-search distribution configures by
# default (its facets.properties).
DEFAULT_FACETS = (
    "project",
    "institute",
    "model",
    "source_id",
    "experiment_family",
    "experiment",
    "time_frequency",
    "product",
    "realm",
    "variable",
    "variable_long_name",
    "cmor_table",
    "cf_standard_name",
    "ensemble",
    "domain",
    "driving_model",
    "rcm_version",
    "data_node",
)

BUILTIN_PROJECTS: dict[str, tuple[str, ...]] = {
    "CMIP6": (
        "mip_era",
        "activity_id",
        "activity_drs",
        "model_cohort",
        "product",
        "source_id",
        "institution_id",
        "source_type",
        "nominal_resolution",
        "experiment_id",
        "experiment_title",
        "sub_experiment_id",
        "variant_label",
        "member_id",
        "grid_label",
        "table_id",
        "frequency",
        "realm",
        "variable_id",
        "variable_long_name",
        "cf_standard_name",
        "data_specs_version",
    ),
    "CMIP5": (
        "product",
        "institute",
        "model",
        "experiment",
        "experiment_family",
        "time_frequency",
        "realm",
        "cmor_table",
        "ensemble",
        "forcing",
        "variable",
        "variable_long_name",
        "cf_standard_name",
    ),
    "CMIP3": (
        "institute",
        "model",
        "experiment",
        "time_frequency",
        "realm",
        "ensemble",
        "variable",
    ),
    "CORDEX": (
        "product",
        "domain",
        "institute",
        "driving_model",
        "experiment",
        "experiment_family",
        "ensemble",
        "rcm_name",
        "rcm_version",
        "time_frequency",
        "variable",
        "variable_long_name",
        "cf_standard_name",
    ),
    "CORDEX-CMIP6": (
        "mip_era",
        "activity_id",
        "domain_id",
        "institution_id",
        "driving_source_id",
        "driving_experiment_id",
        "driving_variant_label",
        "source_id",
        "version_realization",
        "frequency",
        "variable_id",
    ),
    "obs4MIPs": (
        "product",
        "institute",
        "institution_id",
        "source_id",
        "source_type",
        "realm",
        "time_frequency",
        "frequency",
        "grid_label",
        "nominal_resolution",
        "variable",
        "variable_id",
        "variable_long_name",
        "cf_standard_name",
    ),
    "input4MIPs": (
        "mip_era",
        "target_mip",
        "institution_id",
        "source_id",
        "source_version",
        "dataset_category",
        "realm",
        "frequency",
        "variable_id",
        "grid_label",
        "nominal_resolution",
        "dataset_status",
    ),
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class FacetConfigError(ValueError):
    """The facets file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class FacetProfile:
    common: tuple[str, ...]
    default: tuple[str, ...]
    projects: Mapping[str, tuple[str, ...]]
    # `facets=*` lists every field records hold but NOT_FACETS, as an esg-search whose facet
    # profile reads Solr's field list does, instead of the configured facets
    star_lists_fields: bool = False

    @classmethod
    def builtin(cls) -> FacetProfile:
        return cls(COMMON_FACETS, DEFAULT_FACETS, dict(BUILTIN_PROJECTS))

    def names(self) -> list[str]:
        """Every configured facet: the common ones first, then the default list, then each
        project's in order."""
        per_project = (n for p in self.projects.values() for n in p)
        return list(dict.fromkeys([*self.common, *self.default, *per_project]))

    def for_projects(self, projects: Iterable[str]) -> list[str]:
        """The facets of these projects (project names compare case-insensitively, as the
        project facet does); all configured facets when one of them is not configured."""
        by_lower = {name.lower(): facets for name, facets in self.projects.items()}
        chosen = [by_lower.get(p.lower()) for p in projects]
        if not chosen or any(c is None for c in chosen):
            return self.names()
        return list(dict.fromkeys([*self.common, *(n for c in chosen if c for n in c)]))


def _names(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FacetConfigError(f"{where} must be a list of facet names")
    for name in value:
        if not _NAME.fullmatch(name):
            raise FacetConfigError(f"{where}: {name!r} is not a field name")
    return tuple(dict.fromkeys(value))


def load_facet_profile(path: Path | None) -> FacetProfile:
    """The built-in profile, changed by the TOML file at `path` when one is given."""
    if path is None:
        return FacetProfile.builtin()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise FacetConfigError(f"{path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FacetConfigError(f"{path}: not TOML: {exc}") from None
    unknown = set(data) - {"common", "default", "builtin", "star", "projects"}
    if unknown:
        raise FacetConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
            "expected common, default, builtin, star and [projects]"
        )
    star = data.get("star", "configured")
    if star not in ("configured", "fields"):
        raise FacetConfigError(f'{path}: star must be "configured" or "fields"')
    keep = data.get("builtin", True)
    if not isinstance(keep, bool):
        raise FacetConfigError(f"{path}: builtin must be true or false")
    common = _names(data["common"], f"{path}: common") if "common" in data else COMMON_FACETS
    default = _names(data["default"], f"{path}: default") if "default" in data else DEFAULT_FACETS
    projects: dict[str, tuple[str, ...]] = dict(BUILTIN_PROJECTS) if keep else {}
    table = data.get("projects", {})
    if not isinstance(table, dict):
        raise FacetConfigError(f"{path}: projects must be a table ([projects])")
    for project, facets in table.items():
        if not _PROJECT.fullmatch(project):
            raise FacetConfigError(f"{path}: {project!r} is not a project name")
        projects[project] = _names(facets, f"{path}: projects.{project}")
    return FacetProfile(common, default, projects, star_lists_fields=star == "fields")
