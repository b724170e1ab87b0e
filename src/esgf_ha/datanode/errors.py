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
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(DataNodeError):
    status = 400


class NotFound(DataNodeError):
    status = 404


class PayloadTooLarge(DataNodeError):
    status = 413


class RangeNotSatisfiable(DataNodeError):
    status = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class IndexUnavailable(DataNodeError):
    status = 503
