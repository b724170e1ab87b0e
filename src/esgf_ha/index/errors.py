"""Errors of the index package, mapped to HTTP statuses only in `app.py`.

IndexServiceError
 ├── BadRequest            400  malformed request or parameter
 │    ├── InvalidParameter 400  unknown parameter name (esg-search wording)
 │    └── QuerySyntaxError 400  a `query` that is not Lucene syntax
 ├── Forbidden             403  valid credentials without the needed scope
 ├── NotFound              404
 ├── Conflict              409  e.g. republishing a version with different checksums
 ├── PayloadTooLarge       413
 ├── UnsupportedFormat     501  esg-search answers an unknown `format` with 501
 └── NotReady              503
      └── SearchTimeout     503  a search ran past its time limit (with Retry-After)
"""

from __future__ import annotations


class IndexServiceError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(IndexServiceError):
    status = 400


class InvalidParameter(BadRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"Invalid HTTP query parameter={name}")
        self.name = name


class QuerySyntaxError(BadRequest):
    pass


class Forbidden(IndexServiceError):
    status = 403


class NotFound(IndexServiceError):
    status = 404


class Conflict(IndexServiceError):
    status = 409


class PayloadTooLarge(IndexServiceError):
    status = 413


class UnsupportedFormat(IndexServiceError):
    status = 501


class NotReady(IndexServiceError):
    status = 503


class SearchTimeout(NotReady):
    """A search stopped at its time limit; clients may retry after `retry_after` seconds."""

    retry_after = 5
