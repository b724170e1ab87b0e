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
    """Anything the index refuses or cannot do; the edge answers `status` with `message`,
    so core code never imports HTTP and every refusal reaches the client in words."""

    status = 500

    def __init__(self, message: str) -> None:
        """Keep the message apart from the args so the edge can send it verbatim."""
        super().__init__(message)
        self.message = message


class BadRequest(IndexServiceError):
    """The client sent something we will not act on; retrying unchanged cannot help."""

    status = 400


class InvalidParameter(BadRequest):
    """An unknown parameter name, worded as esg-search words it: clients match that text."""

    def __init__(self, name: str) -> None:
        """Keep the name, so a caller can tell which parameter was refused."""
        super().__init__(f"Invalid HTTP query parameter={name}")
        self.name = name


class QuerySyntaxError(BadRequest):
    """A `query` our Lucene subset cannot parse; the message points at the offending part."""


class Forbidden(IndexServiceError):
    """Valid credentials that do not cover this write (scope, data node or project)."""

    status = 403


class NotFound(IndexServiceError):
    """A record, change or snapshot that is not (or no longer) in this index."""

    status = 404


class Conflict(IndexServiceError):
    """A write that contradicts what is stored; accepting it would lose the stored record."""

    status = 409


class PayloadTooLarge(IndexServiceError):
    """A body or batch past the configured limits, refused before it costs memory."""

    status = 413


class UnsupportedFormat(IndexServiceError):
    """A `format` we do not render; 501 because esg-search answers so and clients expect it."""

    status = 501


class NotReady(IndexServiceError):
    """The index cannot answer now (store swapped or lagging); the same request may work later."""

    status = 503


class SearchTimeout(NotReady):
    """A search stopped at its time limit; clients may retry after `retry_after` seconds."""

    retry_after = 5
