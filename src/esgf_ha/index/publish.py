"""Publication semantics on the master: what each write does to the records.

Every function takes an open store Transaction, so a batch commits whole or not at all, and
records its effect in the change log in that same transaction.

Rules (spec: data-node-and-publication §2.6-2.7):
- publishing version N+1 of a dataset makes it `latest` and its older versions (and their files)
  not; publishing an older version never demotes a newer one; `latest` is per data node;
- republishing an existing version with different files or checksums is refused (409);
  republishing it unchanged changes nothing;
- retraction keeps the dataset record with `retracted=true, latest=false` and removes its files
  and aggregations; deletion removes the record and its children;
- a file or aggregation id belongs to one dataset: a record that would move it to another is
  refused (409), as is a `/ws/publish` that would change a published dataset version;
- a credential bound to data nodes (and projects) writes only their records (403, see
  `binding.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from esgf_ha.index.binding import Binding, check
from esgf_ha.index.errors import BadRequest, Conflict, NotFound
from esgf_ha.index.store import Transaction
from esgf_ha.records.errors import InvalidRecord
from esgf_ha.records.schema import normalize_record, parse_date, version_number

CHILD_CORES = ("File", "Aggregation")
# the lists of child records an entry of a batch may hold beside its "dataset", and their type
CHILDREN = (("files", "File"), ("aggregations", "Aggregation"))
NOT_INHERITED = frozenset(
    """id type master_id instance_id title number_of_files number_of_aggregations size access
    datetime_start datetime_stop datetime_end globus_url url checksum checksum_type tracking_id
    _timestamp _version_ description xlink""".split()
)


@dataclass
class Outcome:
    published: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    updated: int = 0
    retracted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _now() -> str:
    return parse_date(datetime.now(UTC))


def _stamp(record: dict[str, object]) -> dict[str, object]:
    record["_timestamp"] = _now()
    record["_version_"] = time.time_ns() >> 10 << 10
    return record


def _normalize(raw: object, where: str) -> dict[str, object]:
    try:
        return normalize_record(raw)  # type: ignore[arg-type]
    except InvalidRecord as exc:
        raise BadRequest(f"{where}: {exc}") from None


def _children(txn: Transaction, dataset_id: str) -> list[tuple[str, int, dict[str, object]]]:
    out = []
    for core in CHILD_CORES:
        for slot, rec in txn.find(core, "dataset_id", dataset_id):
            out.append((core, slot, rec))
    return out


def _set_latest(txn: Transaction, slot: int, record: dict[str, object], latest: bool) -> None:
    """Flip `latest` on a dataset and its children."""
    if record.get("latest") != latest:
        txn.replace("Dataset", slot, _stamp({**record, "latest": latest}))
    for core, child_slot, child in _children(txn, str(record["id"])):
        if child.get("latest") != latest:
            txn.replace(core, child_slot, _stamp({**child, "latest": latest}))


def _resolve_latest(txn: Transaction, dataset: dict[str, object]) -> bool:
    """Decide `latest` for an incoming dataset version and demote older versions."""
    master_id = dataset.get("master_id")
    if not master_id or not dataset.get("latest", True):
        return bool(dataset.get("latest", True))
    mine = version_number(dataset.get("version", 0))
    others = [
        (slot, rec)
        for slot, rec in txn.find("Dataset", "master_id", str(master_id))
        if rec.get("data_node") == dataset.get("data_node")
        and rec.get("id") != dataset.get("id")
        and not rec.get("retracted")
    ]
    if any(version_number(rec.get("version", 0)) > mine for _, rec in others):
        return False
    for slot, rec in others:
        if rec.get("latest"):
            _set_latest(txn, slot, rec, False)
    return True


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _file_signature(records: Iterable[dict[str, object]]) -> dict[str, tuple[str, ...]]:
    return {str(r["id"]): tuple(str(c) for c in _as_list(r.get("checksum"))) for r in records}


VOLATILE = frozenset({"_timestamp", "_version_", "latest"})


def _same_content(old: dict[str, object], new: dict[str, object]) -> bool:
    """Equal but for what the index itself stamps on every write."""
    return {k: v for k, v in old.items() if k not in VOLATILE} == {
        k: v for k, v in new.items() if k not in VOLATILE
    }


def _owned_elsewhere(
    txn: Transaction, core: str, child: dict[str, object]
) -> tuple[int, dict[str, object]] | None:
    """The stored record with this child's id; Conflict if it belongs to another dataset."""
    prior = txn.get(core, str(child["id"]))
    if prior is not None and prior[1].get("dataset_id") != child.get("dataset_id"):
        raise Conflict(
            f"{core.lower()} {child['id']} belongs to dataset {prior[1].get('dataset_id')}, "
            f"not {child.get('dataset_id')}: a record id cannot move between datasets"
        )
    return prior


def publish_batch(txn: Transaction, batch: object, binding: Binding | None = None) -> Outcome:
    """Our publisher's JSON batch: `{"datasets": [{"dataset": {...}, "files": [...],
    "aggregations": [...]}]}`. All or nothing."""
    if not isinstance(batch, dict) or not isinstance(batch.get("datasets"), list):
        raise BadRequest('the batch must be an object with a "datasets" list')
    outcome = Outcome()
    upserts: list[dict[str, object]] = []
    for i, entry in enumerate(batch["datasets"]):
        where = f"datasets[{i}]"
        if not isinstance(entry, dict) or "dataset" not in entry:
            raise BadRequest(f'{where}: each entry needs a "dataset" record')
        dataset = _normalize(entry["dataset"], f"{where}.dataset")
        if dataset["type"] != "Dataset":
            raise BadRequest(f"{where}.dataset: type must be Dataset")
        children: list[tuple[str, dict[str, object]]] = []
        # files carry their dataset's facets (esgcet copies them); a file's own values win
        inherited = {k: v for k, v in dataset.items() if k not in NOT_INHERITED}
        for key, core in CHILDREN:
            raw_children = entry.get(key, [])
            if not isinstance(raw_children, list):
                raise BadRequest(f"{where}.{key} must be a list")
            for j, raw in enumerate(raw_children):
                child = _normalize(
                    {**inherited, "type": core, "dataset_id": dataset["id"], **raw}
                    if isinstance(raw, dict)
                    else raw,
                    f"{where}.{key}[{j}]",
                )
                title = str(child.get("title", ""))
                if "master_id" in dataset and title:
                    child.setdefault("master_id", f"{dataset['master_id']}.{title}")
                if "instance_id" in dataset and title:
                    child.setdefault("instance_id", f"{dataset['instance_id']}.{title}")
                if child["type"] != core or child["dataset_id"] != dataset["id"]:
                    raise BadRequest(
                        f"{where}.{key}[{j}]: must be a {core} of dataset {dataset['id']}"
                    )
                children.append((core, child))
        ids = [str(c["id"]) for _, c in children]
        if len(set(ids)) != len(ids):
            raise BadRequest(f"{where}: two files share an id")
        check(binding, dataset, "publish")
        for _, child in children:
            check(binding, child, "publish")
        dataset_id = str(dataset["id"])
        existing = txn.get("Dataset", dataset_id)
        if existing is not None:
            _, old = existing
            check(binding, old, "republish")
            if old.get("retracted"):
                raise Conflict(f"dataset {dataset_id} was retracted; publish it as a new version")
            old_files = [rec for core, _, rec in _children(txn, dataset_id) if core == "File"]
            new_files = [rec for core, rec in children if core == "File"]
            if _file_signature(old_files) != _file_signature(new_files):
                raise Conflict(
                    f"dataset {dataset_id} is already published with other files or "
                    "checksums; publish a new version instead"
                )
            outcome.unchanged.append(dataset_id)
            continue
        latest = _resolve_latest(txn, dataset)
        stamped = _stamp({**dataset, "latest": latest})
        for core, child in children:
            prior = _owned_elsewhere(txn, core, child)
            if prior is not None:
                check(binding, prior[1], "replace")
                txn.delete(core, prior[0])
            record = _stamp({**child, "latest": latest})
            txn.insert(core, record)
            upserts.append(record)
        txn.insert("Dataset", stamped)
        upserts.append(stamped)
        outcome.published.append(dataset_id)
    if outcome.published:
        txn.log("publish", {"datasets": outcome.published})
    return outcome


def publish_record(
    txn: Transaction, raw: dict[str, object], binding: Binding | None = None
) -> Outcome:
    """One record from esgcet's `/ws/publish`: files first, the dataset last.

    The version rules are those of `publish_batch`: once a dataset version is published its
    record and its files change only through a new version (409 otherwise); sending the same
    record again changes nothing."""
    record = _normalize(raw, "record")
    core = str(record["type"])
    record_id = str(record["id"])
    check(binding, record, "publish")
    prior = _owned_elsewhere(txn, core, record) if core != "Dataset" else txn.get(core, record_id)
    if prior is not None:
        check(binding, prior[1], "replace")
    unchanged = Outcome(unchanged=[record_id], messages=[f"Published record: {record_id}"])
    if core == "Dataset":
        if prior is not None and prior[1].get("retracted"):
            raise Conflict(f"dataset {record_id} was retracted; publish it as a new version")
        if prior is not None:
            if _same_content(prior[1], record):
                return unchanged
            raise Conflict(
                f"dataset {record_id} is already published with other content; "
                "publish a new version instead"
            )
        latest = _resolve_latest(txn, record)
        record["latest"] = latest
        if not latest:
            for child_core, slot, child in _children(txn, record_id):
                if child.get("latest"):
                    txn.replace(child_core, slot, _stamp({**child, "latest": False}))
    else:
        parent = txn.get("Dataset", str(record["dataset_id"]))
        if parent is not None and not parent[1].get("retracted"):
            if prior is not None and _same_content(prior[1], record):
                return unchanged
            raise Conflict(
                f"dataset {record['dataset_id']} is already published: its {core.lower()} "
                f"{record_id} cannot be added or changed; publish a new version instead"
            )
        old_sum = prior[1].get("checksum") if prior is not None else None
        if core == "File" and old_sum and record.get("checksum") and old_sum != record["checksum"]:
            raise Conflict(f"file {record_id} is already published with another checksum")
    if prior is not None:
        txn.delete(core, prior[0])
    txn.insert(core, _stamp(record))
    txn.log("publish", {"records": [record_id]})
    return Outcome(published=[record_id], messages=[f"Published record: {record_id}"])


def retract(txn: Transaction, ids: list[str], binding: Binding | None = None) -> Outcome:
    outcome = Outcome()
    for record_id in ids:
        found = txn.get("Dataset", record_id)
        if found is not None:
            check(binding, found[1], "retract")
        removed = False
        for core in CHILD_CORES:
            for slot, child in txn.find(core, "dataset_id", record_id):
                check(binding, child, "retract")
                txn.delete(core, slot)
                removed = True
            prior = txn.get(core, record_id)
            if prior is not None:
                check(binding, prior[1], "retract")
                txn.delete(core, prior[0])
                removed = True
        if found is not None:
            slot, rec = found
            txn.replace("Dataset", slot, _stamp({**rec, "retracted": True, "latest": False}))
        if found is None and not removed:
            raise NotFound(f"no record with id {record_id}")
        outcome.retracted.append(record_id)
        outcome.messages.append(f"Retracted id: {record_id}")
    txn.log("retract", {"ids": ids})
    return outcome


def delete(txn: Transaction, ids: list[str], binding: Binding | None = None) -> Outcome:
    outcome = Outcome()
    for record_id in ids:
        hit = False
        for core in ("Dataset", *CHILD_CORES):
            prior = txn.get(core, record_id)
            if prior is not None:
                check(binding, prior[1], "delete")
                txn.delete(core, prior[0])
                hit = True
            if core != "Dataset":
                for slot, child in txn.find(core, "dataset_id", record_id):
                    check(binding, child, "delete")
                    txn.delete(core, slot)
                    hit = True
        if not hit:
            raise NotFound(f"no record with id {record_id}")
        outcome.deleted.append(record_id)
        outcome.messages.append(f"Deleted id: {record_id}")
    txn.log("delete", {"ids": ids})
    return outcome


UPDATE_CORES = {"datasets": "Dataset", "files": "File", "aggregations": "Aggregation"}


def update(
    txn: Transaction,
    core_name: str,
    action: str,
    updates: list[tuple[list[tuple[str, str]], dict[str, list[str]]]],
    binding: Binding | None = None,
) -> Outcome:
    """esg-search `/ws/update`: set/add/remove field values on every record matching a query."""
    core = UPDATE_CORES.get(core_name) or (
        core_name if core_name in UPDATE_CORES.values() else None
    )
    if core is None:
        raise BadRequest(f"unknown core {core_name!r}: use datasets, files or aggregations")
    if action not in ("set", "add", "remove"):
        raise BadRequest(f"unknown update action {action!r}: use set, add or remove")
    count = 0
    for query, fields in updates:
        if not query:
            raise BadRequest("an update needs a <query> such as id=<record id>")
        matches = _match(txn, core, query)
        for slot, rec in matches:
            check(binding, rec, "update")
            new = dict(rec)
            for name, values in fields.items():
                if name in ("id", "type", "dataset_id"):
                    raise BadRequest(f"field {name} cannot be updated")
                if action == "set":
                    if values:
                        new[name] = values if len(values) > 1 else values[0]
                    else:
                        new.pop(name, None)
                elif action == "add":
                    cur = new.get(name)
                    cur_list = cur if isinstance(cur, list) else ([] if cur is None else [cur])
                    new[name] = cur_list + values
                else:
                    cur = new.get(name)
                    cur_list = cur if isinstance(cur, list) else ([] if cur is None else [cur])
                    kept = [v for v in cur_list if str(v) not in values]
                    if kept:
                        new[name] = kept
                    else:
                        new.pop(name, None)
            record = _normalize(new, f"update of {rec.get('id')}")
            check(binding, record, "update")
            txn.replace(core, slot, record if "_timestamp" in fields else _stamp(record))
            count += 1
    txn.log("update", {"core": core, "count": count})
    return Outcome(updated=count, messages=[f"Number of records updated: {count}"])


def _match(
    txn: Transaction, core: str, query: list[tuple[str, str]]
) -> list[tuple[int, dict[str, object]]]:
    (first_name, first_value), rest = query[0], query[1:]
    indexed = ("id", "dataset_id", "master_id", "instance_id", "title", "tracking_id", "checksum")
    if first_name == "id":
        got = txn.get(core, first_value)
        candidates = [got] if got else []
    elif first_name in indexed:
        candidates = txn.find(core, first_name, first_value)
    else:
        candidates = list(txn.scan(core))
        rest = query
    out = []
    for slot, rec in candidates:
        if all(_has(rec, name, value) for name, value in rest):
            out.append((slot, rec))
    return out


def _has(rec: dict[str, object], name: str, value: str) -> bool:
    got = rec.get(name)
    if isinstance(got, list):
        return value in [str(g) for g in got]
    if isinstance(got, bool):
        return str(got).lower() == value.lower()
    return got is not None and str(got) == value
