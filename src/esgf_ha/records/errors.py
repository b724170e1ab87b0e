"""Errors of the record model.

RecordError
 └── InvalidRecord   a record that breaks the schema (HTTP 400 at the edge)
"""


class RecordError(ValueError):
    """Base of the record model's errors; a ValueError so callers outside the package that
    only know the built-in still catch it."""


class InvalidRecord(RecordError):
    """A record that breaks the schema; the message names the record and the field, because
    a publisher fixing a batch of thousands needs to know which one."""
