"""Errors of the publisher.

PublisherError
 ├── FileProblem          one file cannot be published (the rest of the run goes on)
 │    ├── NotNetCDF       not a netCDF file, or a corrupt one
 │    ├── Unreadable      missing, dangling link, permission denied, changed since the mapfile
 │    ├── OutsideRoot     a path (or the target of a symlink) that leaves its data root
 │    ├── NotDRS          a path that is not a DRS path of the project
 │    ├── MissingAttribute  a global attribute the project requires is absent
 │    └── DRSMismatch     the path and the global attributes disagree
 ├── MapfileError         a mapfile line that cannot be parsed
 └── IndexError_          the master index refused or could not be reached
      ├── Rejected        4xx: the index refused a batch (message from the index)
      └── Unreachable     connection errors or 5xx after every retry
"""

from __future__ import annotations


class PublisherError(Exception):
    """Base of every publisher error; the message is meant for the operator."""


class FileProblem(PublisherError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message

    def __reduce__(self) -> tuple[type[FileProblem], tuple[str, str]]:
        # rebuilt in the parent when a worker process raised it
        return (type(self), (self.path, self.reason))

    @property
    def kind(self) -> str:
        return type(self).__name__


class NotNetCDF(FileProblem):
    pass


class Unreadable(FileProblem):
    pass


class OutsideRoot(FileProblem):
    pass


class NotDRS(FileProblem):
    pass


class MissingAttribute(FileProblem):
    pass


class DRSMismatch(FileProblem):
    pass


class MapfileError(PublisherError):
    pass


class IndexError_(PublisherError):  # noqa: N801 - the builtin IndexError is another thing
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Rejected(IndexError_):
    pass


class Unreachable(IndexError_):
    pass
