"""Errors of the data node, mapped to HTTP statuses only in `app.py`.

DataNodeError
 ├── BadRequest            400  malformed path, constraint or parameter
 ├── NotFound              404  unknown root, path or dataset
 ├── PayloadTooLarge       413  an OPeNDAP subset larger than the configured limit
 ├── RangeNotSatisfiable   416  a byte range outside the file or not well formed
 └── IndexUnavailable      503  the index could not be asked (only where its answer is needed)
"""

from __future__ import annotations


class DataNodeError(Exception):
    """Anything the data node refuses or cannot serve; the edge answers `status` with
    `message`, so file and catalog code never imports HTTP."""

    status = 500

    def __init__(self, message: str) -> None:
        """Keep the message apart from the args so the edge can send it verbatim."""
        super().__init__(message)
        self.message = message


class BadRequest(DataNodeError):
    """A path, constraint or parameter we will not act on; retrying unchanged cannot help."""

    status = 400


class NotFound(DataNodeError):
    """Nothing under our roots answers to this path, and no other node was found for it."""

    status = 404


class PayloadTooLarge(DataNodeError):
    """An OPeNDAP subset larger than the limit: refused before it is read into memory."""

    status = 413


class RangeNotSatisfiable(DataNodeError):
    """A byte range outside the file; carries the size for the `Content-Range: */size`
    header that lets a client correct its request."""

    status = 416

    def __init__(self, message: str, size: int) -> None:
        """Keep the file's size: RFC 9110 wants it in the 416 answer."""
        super().__init__(message)
        self.size = size


class IndexUnavailable(DataNodeError):
    """The index was needed (to find a file elsewhere) and could not be asked; a retry may
    succeed, so 503 rather than a 404 that would read as "no such file"."""

    status = 503
