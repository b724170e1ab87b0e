"""Which records a publishing credential may write: the data nodes (and projects) it is bound to.

Every write checks each record it adds, replaces or removes, inside the write's transaction,
so a refused record leaves the whole request without effect. Unbound credentials (operator
tokens, the federation's client certificates, trusted networks) may write anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from esgf_ha.common.auth import Principal
from esgf_ha.index.errors import Forbidden


@dataclass(frozen=True)
class Binding:
    data_nodes: frozenset[str]
    projects: frozenset[str] | None = None
    subject: str = ""

    @classmethod
    def of(cls, principal: Principal) -> Binding | None:
        if principal.data_nodes is None:
            return None
        return cls(principal.data_nodes, principal.projects, principal.subject)

    def check(self, record: dict[str, object], action: str) -> None:
        """Forbidden unless this binding covers the record."""
        record_id = record.get("id", "?")
        node = record.get("data_node")
        if node not in self.data_nodes:
            raise Forbidden(
                f"cannot {action} {record_id}: its data_node {node!r} is not one this "
                f"credential is bound to ({', '.join(sorted(self.data_nodes))})"
            )
        if self.projects is None:
            return
        project = record.get("project")
        values = project if isinstance(project, list) else [project]
        if not values or not all(v in self.projects for v in values):
            raise Forbidden(
                f"cannot {action} {record_id}: its project {project!r} is not one this "
                f"credential is bound to ({', '.join(sorted(self.projects))})"
            )


def check(binding: Binding | None, record: dict[str, object], action: str) -> None:
    if binding is not None:
        binding.check(record, action)
