"""URL paths below a data root to files on disk, refusing everything that could leave the
root or reveal what is not published: `..`, NUL and control bytes, dot-files, symlinks whose
target lies outside the root; and the DRS ids a path stands for."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from esgf_ha.datanode.errors import BadRequest, NotFound

MAX_PATH = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VERSION_DIR = re.compile(r"^v\d+$")


@dataclass(frozen=True)
class Located:
    root: str  # URL name of the data root
    rel: str  # path below the root, '/'-separated, as in the URL
    path: Path  # resolved file or directory on disk (may not exist)

    @property
    def url_path(self) -> str:
        return f"{self.root}/{self.rel}" if self.rel else self.root


def split(url_path: str) -> tuple[str, str]:
    """`<root>/<rel>` checked for hostile input; the root name and the relative path."""
    if len(url_path) > MAX_PATH:
        raise BadRequest(f"path longer than {MAX_PATH} characters")
    if _CONTROL.search(url_path):
        raise BadRequest("control characters (NUL included) are not allowed in paths")
    if "\\" in url_path:
        raise BadRequest("backslashes are not allowed in paths")
    parts = url_path.strip("/").split("/") if url_path.strip("/") else []
    for part in parts:
        if part in ("", ".", ".."):
            raise BadRequest("empty, '.' and '..' path segments are not allowed")
        if part.startswith("."):
            raise NotFound("no such file")
    if not parts:
        raise NotFound("no data root named in the path")
    return parts[0], "/".join(parts[1:])


def locate(roots: dict[str, Path], url_path: str) -> Located:
    """The file or directory a URL path names, inside its root even after symlinks."""
    name, rel = split(url_path)
    base = roots.get(name)
    if base is None:
        raise NotFound(f"no data root named {name!r}")
    real_base = os.path.realpath(base)
    target = os.path.realpath(os.path.join(real_base, rel)) if rel else real_base
    if target != real_base and os.path.commonpath([real_base, target]) != real_base:
        # a symlink pointing outside the root: answer as if nothing were there
        raise NotFound("no such file")
    return Located(name, rel, Path(target))


def file_instance_id(rel: str) -> str | None:
    """The File instance_id a DRS path stands for: the directories above the version
    directory joined by dots, then `.v<version>.<file name>` (CMIP6 and CMIP5 alike)."""
    parts = rel.split("/")
    if len(parts) < 3:
        return None
    for i in range(len(parts) - 2, 0, -1):
        if _VERSION_DIR.match(parts[i]):
            return ".".join(parts[:i]) + f".{parts[i]}.{parts[-1]}"
    return None


def catalog_path(instance_id: str) -> str:
    """Where a dataset version's catalog lives below /thredds/catalog/: the master_id with
    dots turned into slashes, then `<instance_id>.xml` — the same at every site."""
    master, _, _version = instance_id.rpartition(".")
    return f"esgcet/{master.replace('.', '/')}/{instance_id}.xml"
