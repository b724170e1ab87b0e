"""Names shared by the STAC modules: collections, property names and the facets of a project.

A collection is a project (`cmip6` for `project=CMIP6`). Record fields become item properties
prefixed with the collection's id (`cmip6:variable_id`), as ESGF's CMIP6 STAC extension names
them; a few map to STAC's own properties (`start_datetime`, `updated`, `title`).
"""

from __future__ import annotations

# the facets MetaGrid shows for each project, offered as collection summaries and page panels
PROJECT_FACETS: dict[str, tuple[str, ...]] = {
    "CMIP6": (
        "activity_id",
        "data_node",
        "source_id",
        "institution_id",
        "source_type",
        "experiment_id",
        "sub_experiment_id",
        "nominal_resolution",
        "variant_label",
        "grid_label",
        "table_id",
        "frequency",
        "realm",
        "variable_id",
        "cf_standard_name",
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
        "variable",
        "variable_long_name",
        "cf_standard_name",
        "data_node",
    ),
}
DEFAULT_FACETS = ("institution_id", "source_id", "experiment_id", "variable_id", "data_node")

# record fields that STAC says with its own words
STAC_NAMES = {
    "datetime_start": "start_datetime",
    "datetime_stop": "end_datetime",
    "_timestamp": "updated",
    "title": "title",
    "description": "description",
}
FROM_STAC_NAMES = {v: k for k, v in STAC_NAMES.items()}
# record fields that are not item properties: identifiers, geometry, bookkeeping, file access
NOT_PROPERTIES = frozenset(
    {
        "id",
        "type",
        "score",
        "_version_",
        "url",
        "xlink",
        "access",
        "north_degrees",
        "south_degrees",
        "east_degrees",
        "west_degrees",
        "dataset_id_template_",
        "directory_format_template_",
    }
)
FLAGS = ("latest", "replica", "retracted")


def collection_id(project: str) -> str:
    return project.lower()


def prefix(project: str) -> str:
    return f"{collection_id(project)}:"


def facets_of(project: str) -> tuple[str, ...]:
    return PROJECT_FACETS.get(project, DEFAULT_FACETS)


ABSENT = "?"  # marks a property no record carries: a name the engine matches nothing on


def field_of(prop: str, known: set[str]) -> str:
    """The record field a STAC property name refers to: `properties.cmip6:variable_id`,
    `cmip6:variable_id` and `variable_id` all name `variable_id`; `id` and `collection` are the
    item's own. A name no record carries is absent from every item, as CQL2 treats a missing
    property (it then compares as null): `ABSENT` + the name."""
    name = prop[len("properties.") :] if prop.startswith("properties.") else prop
    if name in ("id", "collection"):
        return name
    if name in FROM_STAC_NAMES:
        return FROM_STAC_NAMES[name]
    if ":" in name:
        name = name.split(":", 1)[1]
    if name in known and name not in NOT_PROPERTIES:
        return name
    return ABSENT + prop
