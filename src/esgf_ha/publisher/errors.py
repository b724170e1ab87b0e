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
    """One file that cannot be published; the run goes on with the others and reports it,
    because one bad file among thousands must not stop a publication."""

    def __init__(self, path: str, message: str) -> None:
        """Keep path and reason apart: the run report lists them as separate fields."""
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message

    def __reduce__(self) -> tuple[type[FileProblem], tuple[str, str]]:
        """Rebuild it in the parent when a worker process raised it (the default pickling
        would pass the joined message as the path)."""
        return (type(self), (self.path, self.reason))

    @property
    def kind(self) -> str:
        """The class name: a stable tag in the run report and the CLI's messages."""
        return type(self).__name__


class NotNetCDF(FileProblem):
    """Not a netCDF file, or a corrupt one: nothing can be read from it."""


class Unreadable(FileProblem):
    """Missing, a dangling link, no permission, or changed since the mapfile was written."""


class OutsideRoot(FileProblem):
    """A path or symlink target outside its data root: the data node could never serve it."""


class NotDRS(FileProblem):
    """A path that is not a DRS path of the project, so no dataset id can be built from it."""


class MissingAttribute(FileProblem):
    """A global attribute the project requires is absent from the file."""


class DRSMismatch(FileProblem):
    """The path and the file's global attributes disagree; publishing either would mislead."""


class MapfileError(PublisherError):
    """A mapfile line that cannot be parsed; the message gives the file and line number."""


class IndexError_(PublisherError):  # noqa: N801 - the builtin IndexError is another thing
    """The master index refused a batch or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        """Keep the HTTP status when there was one: 4xx and 5xx call for different actions."""
        super().__init__(message)
        self.status = status


class Rejected(IndexError_):
    """The index refused a batch (4xx); retrying the same batch cannot help."""


class Unreachable(IndexError_):
    """No answer, or 5xx, after every retry; the same run may succeed later."""
