"""Size limits of publication requests, checked before any record is normalised or stored.

A publication's body is read with a byte limit as it streams in (`read_capped`), so an oversized
request is refused before it is parsed; the parsed batch is then checked for its record count,
each record's number of fields, each field's number of values and each value's length. Every
refusal is a PayloadTooLarge (413) naming the limit and the setting that raises it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from esgf_ha.index.errors import BadRequest, PayloadTooLarge
from esgf_ha.index.publish import CHILDREN


@dataclass(frozen=True)
class WriteLimits:
    max_body_bytes: int
    max_ws_body_bytes: int
    max_batch_records: int
    max_record_fields: int
    max_field_values: int
    max_value_chars: int

    def _too_large(self, what: str, limit: int, setting: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"{what} exceeds the limit of {limit} (setting {setting}, "
            f"env ESGF_HA_INDEX_{setting.upper()})"
        )

    def check_record(self, record: object, where: str) -> None:
        if not isinstance(record, dict):
            return  # the schema refuses it with a 400 that says why
        if len(record) > self.max_record_fields:
            raise self._too_large(
                f"{where}: {len(record)} fields", self.max_record_fields, "max_record_fields"
            )
        for name, value in record.items():
            values = value if isinstance(value, list) else [value]
            if len(values) > self.max_field_values:
                raise self._too_large(
                    f"{where}: field {str(name)[:80]!r} has {len(values)} values",
                    self.max_field_values,
                    "max_field_values",
                )
            for item in values:
                if isinstance(item, str) and len(item) > self.max_value_chars:
                    raise self._too_large(
                        f"{where}: a value of field {str(name)[:80]!r} has {len(item)} characters",
                        self.max_value_chars,
                        "max_value_chars",
                    )

    def check_batch(self, batch: object) -> None:
        """Counts and sizes of a `{"datasets": [{"dataset", "files", "aggregations"}]}` batch;
        its shape is checked (400) by the publication itself."""
        if not isinstance(batch, dict) or not isinstance(batch.get("datasets"), list):
            return
        total = 0
        for i, entry in enumerate(batch["datasets"]):
            if not isinstance(entry, dict):
                continue
            total += 1
            self.check_record(entry.get("dataset"), f"datasets[{i}].dataset")
            for key, _ in CHILDREN:
                children = entry.get(key)
                if not isinstance(children, list):
                    continue
                total += len(children)
                if total > self.max_batch_records:
                    raise self._too_large(
                        f"the batch has more than {self.max_batch_records} records",
                        self.max_batch_records,
                        "max_batch_records",
                    )
                for j, child in enumerate(children):
                    self.check_record(child, f"datasets[{i}].{key}[{j}]")
        if total > self.max_batch_records:
            raise self._too_large(
                f"the batch has {total} records", self.max_batch_records, "max_batch_records"
            )

    def check_ids(self, ids: Sequence[object]) -> None:
        """The ids of one retraction or deletion (or the updates of one request) count as
        records of a batch."""
        if len(ids) > self.max_batch_records:
            raise self._too_large(f"{len(ids)} ids", self.max_batch_records, "max_batch_records")

    def check_updates(self, updates: list[tuple[object, dict[str, list[str]]]]) -> None:
        # each update may scan a whole core: their number is bounded like a batch's records
        self.check_ids(updates)
        for n, (_, fields) in enumerate(updates):
            self.check_record(fields, f"update {n}")


async def read_capped(
    chunks: AsyncIterator[bytes], declared: str | None, limit: int, setting: str
) -> bytes:
    """A request body read as it streams in, refused as soon as it passes `limit` bytes."""
    message = (
        f"request body larger than {limit} bytes (setting {setting}, "
        f"env ESGF_HA_INDEX_{setting.upper()})"
    )
    if declared:
        if not declared.isdigit():
            raise BadRequest(f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise PayloadTooLarge(message)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(message)
        parts.append(chunk)
    return b"".join(parts)
