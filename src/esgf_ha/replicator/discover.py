"""Ask the index what to replicate: the latest dataset versions matching the selection that
this site does not hold yet, each with its files and every data node that serves them."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from esgf_ha.common.index_client import AsyncIndexClient, IndexClientError, IndexRefused
from esgf_ha.replicator.errors import IndexUnavailable
from esgf_ha.replicator.selection import Selection

log = logging.getLogger("esgf_ha.replicator")
PAGE = 1000
FILE_SERVER = "/thredds/fileServer/"


@dataclass
class FilePlan:
    file_id: str  # the file's instance_id: the same at every site
    rel_path: str  # DRS path below the data root
    size: int
    checksum: str
    checksum_type: str
    sources: list[str]  # download URLs, one per data node
    record: dict[str, object]


@dataclass
class DatasetPlan:
    record: dict[str, object]  # the original's Dataset record (a replica's when no original)
    files: list[FilePlan] = field(default_factory=list)

    @property
    def instance_id(self) -> str:
        return str(self.record["instance_id"])


def _first(value: object) -> str:
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def http_url(record: dict[str, object]) -> str | None:
    urls = record.get("url") or []
    for entry in urls if isinstance(urls, list) else [urls]:
        parts = str(entry).split("|")
        if len(parts) == 3 and parts[2] == "HTTPServer":
            return parts[0]
    return None


def rel_path_of(url: str) -> str | None:
    """The DRS path below the data root: `…/thredds/fileServer/<root>/<rel>` → `<rel>`."""
    path = urlsplit(url).path
    if FILE_SERVER not in path:
        return None
    rest = path.split(FILE_SERVER, 1)[1]
    _, sep, rel = rest.partition("/")
    if not sep or not rel or any(p in ("", ".", "..") for p in rel.split("/")):
        return None
    return rel


class IndexClient:
    """The index searched for work, through the shared client (its retries and TLS); its
    failures become the replicator's `IndexUnavailable`."""

    def __init__(self, client: AsyncIndexClient) -> None:
        self.client = client

    async def search(self, params: list[tuple[str, str]]) -> list[dict[str, object]]:
        """Every matching record, paged."""
        try:
            return await self.client.search_all(params, PAGE)
        except IndexRefused as exc:
            raise IndexUnavailable(f"{self.client.url} refused the search: {exc}") from None
        except IndexClientError as exc:
            raise IndexUnavailable(f"{self.client.url} did not answer: {exc}") from None


async def find_work(
    index: IndexClient, selection: Selection, data_node: str, skip: set[str]
) -> list[DatasetPlan]:
    """Latest, unretracted dataset versions matching the selection that `data_node` lacks.

    Every pass lists the whole selection, so only four fields of each copy come back; whole
    records are fetched for the versions that are new work."""
    datasets = await index.search(
        [("type", "Dataset"), ("latest", "true"), ("retracted", "false"),
         ("fields", "id,instance_id,data_node,replica"), *selection.params()]
    )  # fmt: skip
    copies: dict[str, list[dict[str, object]]] = defaultdict(list)
    for rec in datasets:
        copies[str(rec.get("instance_id") or "")].append(rec)
    plans = []
    for instance, recs in sorted(copies.items()):
        if not instance or instance in skip:
            continue
        if any(r.get("data_node") == data_node for r in recs):
            continue  # this site already serves it (published here, or replicated earlier)
        chosen = next((r for r in recs if not r.get("replica")), recs[0])
        full = await index.search([("type", "Dataset"), ("id", str(chosen["id"]))])
        if not full:
            continue  # retracted or deleted since the listing: the next pass decides
        original = full[0]
        plan = DatasetPlan(original)
        files = await index.search(
            [("type", "File"), *(("dataset_id", str(r["id"])) for r in recs)]
        )
        by_file: dict[str, list[dict[str, object]]] = defaultdict(list)
        for f in files:
            by_file[str(f.get("instance_id") or f.get("title"))].append(f)
        complete = True
        for file_id, frecs in sorted(by_file.items()):
            main = next((f for f in frecs if not f.get("replica")), frecs[0])
            urls = [u for u in (http_url(f) for f in frecs) if u]
            rel = next((r for r in (rel_path_of(u) for u in urls) if r), None)
            checksum = _first(main.get("checksum"))
            if rel is None or not checksum or "size" not in main:
                log.warning("file record unusable, dataset skipped", extra={"file": file_id})
                complete = False
                break
            plan.files.append(
                FilePlan(file_id, rel, int(str(main["size"])), checksum.lower(),
                         (_first(main.get("checksum_type")) or "SHA256").upper(), urls, main)
            )  # fmt: skip
        expected = original.get("number_of_files")
        if complete and plan.files and (expected is None or int(str(expected)) == len(plan.files)):
            plans.append(plan)
        elif complete:
            log.warning(
                "dataset's file records incomplete, skipped for now",
                extra={"instance_id": instance, "files": len(plan.files), "expected": expected},
            )
    return plans
