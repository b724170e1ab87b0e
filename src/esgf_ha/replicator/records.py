"""Replica records: the original's Dataset and File records, re-addressed to this site.

Same `master_id` and `instance_id` (that is what makes them the same data), `replica=true`, this
site's `data_node`, ids `<instance_id>|<data_node>`, and URLs at this site's data node under the
same DRS path, so a client can use either copy the same way.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DROP = frozenset({"_timestamp", "_version_", "score", "id", "dataset_id", "url", "replica",
                  "data_node", "latest", "retracted"})  # fmt: skip


def data_node_of(data_node_url: str) -> str:
    """`http://127.0.1.2:8081` → `127.0.1.2:8081` (how records name a data node)."""
    return urlsplit(data_node_url).netloc


def replica_batch(
    dataset: dict[str, object],
    files: list[tuple[str, dict[str, object]]],
    *,
    data_node_url: str,
    root_name: str,
) -> dict[str, object]:
    """`files`: (rel_path, original File record). Returns a `/api/v1/publish` batch."""
    node = data_node_of(data_node_url)
    base = data_node_url.rstrip("/")
    instance = str(dataset["instance_id"])
    dataset_id = f"{instance}|{node}"
    ds = {k: v for k, v in dataset.items() if k not in DROP}
    ds.update(id=dataset_id, data_node=node, replica=True, latest=True, retracted=False)
    had_opendap = False
    out_files = []
    for rel, original in files:
        rec = {k: v for k, v in original.items() if k not in DROP}
        urls = [f"{base}/thredds/fileServer/{root_name}/{rel}|application/netcdf|HTTPServer"]
        if any(str(u).endswith("|OPENDAP") for u in _list(original.get("url"))):
            urls.append(
                f"{base}/thredds/dodsC/{root_name}/{rel}.html|application/opendap-html|OPENDAP"
            )
            had_opendap = True
        rec.update(
            id=f"{original.get('instance_id')}|{node}",
            dataset_id=dataset_id,
            data_node=node,
            replica=True,
            url=urls,
        )
        out_files.append(rec)
    ds["access"] = ["HTTPServer", "OPENDAP"] if had_opendap else ["HTTPServer"]
    return {"datasets": [{"dataset": ds, "files": out_files}]}


def _list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
