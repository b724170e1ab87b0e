"""Errors of the record model.

RecordError
 └── InvalidRecord   a record that breaks the schema (HTTP 400 at the edge)
"""


class RecordError(ValueError):
    pass


class InvalidRecord(RecordError):
    pass
