"""The Data Reference Syntax of CMIP5 and CMIP6: identifiers and paths from facets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Project:
    name: str  # value of the `project` facet
    id_facets: tuple[str, ...]  # dataset master_id = id_prefix + these facets, dot-joined
    id_prefix: str
    directory_template: str  # %(facet)s template below the data root
    file_dir_suffix: tuple[str, ...]  # facets below the version directory (CMIP5: variable)

    @property
    def dataset_id_template(self) -> str:
        parts = [self.id_prefix] if self.id_prefix else []
        parts += [f"%({f})s" for f in self.id_facets]
        return ".".join(parts)

    def master_id(self, facets: dict[str, str]) -> str:
        parts = [self.id_prefix] if self.id_prefix else []
        return ".".join(parts + [facets[f] for f in self.id_facets])

    def directory(self, facets: Mapping[str, object], version: str) -> str:
        values = {**facets, "version": f"v{version}", "root": ""}
        return (self.directory_template % values).lstrip("/")

    def __reduce__(self) -> str | tuple[object, ...]:
        # A known project crosses process boundaries (the publisher's file-reading workers)
        # as its name and comes back as the very same object, so `project is CMIP6` holds
        # in the parent whatever process built the value.
        if PROJECTS.get(self.name) == self:
            return (project_named, (self.name,))
        return super().__reduce__()


CMIP6 = Project(
    name="CMIP6",
    id_facets=(
        "mip_era",
        "activity_drs",
        "institution_id",
        "source_id",
        "experiment_id",
        "member_id",
        "table_id",
        "variable_id",
        "grid_label",
    ),
    id_prefix="",
    directory_template=(
        "%(root)s/%(mip_era)s/%(activity_drs)s/%(institution_id)s/%(source_id)s/"
        "%(experiment_id)s/%(member_id)s/%(table_id)s/%(variable_id)s/%(grid_label)s/%(version)s"
    ),
    file_dir_suffix=(),
)

CMIP5 = Project(
    name="CMIP5",
    id_facets=(
        "product",
        "institute",
        "model",
        "experiment",
        "time_frequency",
        "realm",
        "cmor_table",
        "ensemble",
    ),
    id_prefix="cmip5",
    directory_template=(
        "%(root)s/cmip5/%(product)s/%(institute)s/%(model)s/%(experiment)s/%(time_frequency)s/"
        "%(realm)s/%(cmor_table)s/%(ensemble)s/%(version)s"
    ),
    file_dir_suffix=("variable",),
)

PROJECTS = {"CMIP6": CMIP6, "CMIP5": CMIP5}


def project_named(name: str) -> Project:
    return PROJECTS[name]


def instance_id(master_id: str, version: str) -> str:
    return f"{master_id}.v{version}"


def record_id(instance: str, data_node: str) -> str:
    return f"{instance}|{data_node}"
