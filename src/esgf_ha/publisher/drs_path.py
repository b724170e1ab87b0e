"""DRS facets, version and file name read from a path below a data root (spec §1.2, §1.3)."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from esgf_ha.publisher.errors import NotDRS, OutsideRoot
from esgf_ha.records.drs import CMIP5, CMIP6, Project

VERSION = re.compile(r"^v(\d+)$")
# the project directory right below the root decides the project (`--project auto`)
PROJECT_DIRS = {"CMIP6": CMIP6, "cmip5": CMIP5}


@dataclass(frozen=True)
class Root:
    name: str  # the data root name in the file URLs (THREDDS dataset root)
    path: Path  # resolved absolute directory

    @classmethod
    def parse(cls, spec: str) -> Root:
        """`NAME=PATH`, as given to `--root`."""
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--root wants NAME=PATH (e.g. esg_dataroot=/esg/data), got {spec!r}")
        if "/" in name:  # the name is one segment of the file URLs
            raise ValueError(f"--root wants NAME=PATH, and the root name {name!r} has a '/'")
        return cls(name, Path(path).expanduser().resolve())


@dataclass(frozen=True)
class DRSPath:
    root: Root
    path: Path  # absolute, as found (may be a symlink inside the root)
    rel: str  # posix path below the root
    project: Project
    facets: dict[str, str]  # the dataset id facets
    version: str  # without the leading v
    subdir: str  # below the version directory (CMIP5: the variable)
    name: str

    @property
    def master_id(self) -> str:
        return self.project.master_id(self.facets)

    @property
    def variable(self) -> str:
        return self.facets.get("variable_id") or self.subdir


def find_root(path: Path, roots: list[Root]) -> tuple[Root, Path]:
    """The root a file lies under and the file's path in the root's terms.

    The absolute path counts first, before any symlink is followed (a link inside the root
    that leads out of it is then refused by `check_target`). A path that reaches the root
    through a link above it (`/data -> /mnt/vol1/data`, roots are resolved) is read with
    its directories resolved."""
    absolute = Path(path).absolute()
    by_depth = sorted(roots, key=lambda r: len(str(r.path)), reverse=True)
    for candidate in (absolute, _resolved_dir(str(absolute.parent)) / absolute.name):
        for root in by_depth:
            if candidate.is_relative_to(root.path):
                return root, candidate
    raise OutsideRoot(str(path), "not under any --root " + ", ".join(str(r.path) for r in roots))


def parse_drs_path(path: Path, roots: list[Root], project: str = "auto") -> DRSPath:
    root, absolute = find_root(Path(path), roots)
    parts = absolute.relative_to(root.path).parts
    rel = "/".join(parts)
    if not parts:
        raise NotDRS(str(path), "is the root itself")
    proj = PROJECT_DIRS.get(parts[0])
    if project != "auto":
        wanted = CMIP6 if project.upper() == "CMIP6" else CMIP5
        if proj != wanted:
            raise NotDRS(
                str(path), f"is not in a {wanted.name} DRS tree (first directory {parts[0]!r})"
            )
    if proj is None:
        raise NotDRS(
            str(path),
            f"the first directory below the root must be CMIP6 or cmip5, not {parts[0]!r}",
        )
    n_facets = len(proj.id_facets)
    # CMIP6: CMIP6/<8 facets>/vN/file; CMIP5: cmip5/<8 facets>/vN/<variable>/file
    expected = 1 + (n_facets - 1 if proj == CMIP6 else n_facets) + 1 + len(proj.file_dir_suffix) + 1
    if len(parts) != expected:
        raise NotDRS(
            str(path),
            f"a {proj.name} DRS path has {expected} parts below the root "
            f"({proj.directory_template.replace('%(root)s/', '')}/"
            f"{'<variable>/' if proj.file_dir_suffix else ''}<file>), this one has {len(parts)}",
        )
    if proj == CMIP6:
        facets = dict(zip(proj.id_facets, parts[:n_facets], strict=True))
        rest = parts[n_facets:]
    else:
        facets = dict(zip(proj.id_facets, parts[1 : 1 + n_facets], strict=True))
        rest = parts[1 + n_facets :]
    match = VERSION.match(rest[0])
    if not match:
        raise NotDRS(str(path), f"version directory must look like v20190308, not {rest[0]!r}")
    subdir = "/".join(rest[1:-1])
    name = rest[-1]
    return DRSPath(root, absolute, rel, proj, facets, match.group(1), subdir, name)


def check_file_name(drs: DRSPath) -> None:
    """The file name repeats the facets of its directory (spec §1.4 for the time range)."""
    f = drs.facets
    if drs.project == CMIP6:
        stem = "_".join(
            f[k]
            for k in (
                "variable_id",
                "table_id",
                "source_id",
                "experiment_id",
                "member_id",
                "grid_label",
            )
        )
    else:
        stem = "_".join([drs.subdir, f["cmor_table"], f["model"], f["experiment"], f["ensemble"]])
    if not drs.name.endswith(".nc"):
        raise NotDRS(str(drs.path), "file name must end with .nc")
    base = drs.name[:-3]
    if base != stem and not re.fullmatch(re.escape(stem) + r"_[0-9]+-[0-9]+(-clim)?", base):
        raise NotDRS(
            str(drs.path),
            f"file name must be {stem}[_<start>-<end>].nc to match its directory",
        )


@functools.lru_cache(maxsize=4096)
def _resolved_dir(directory: str) -> Path:
    return Path(os.path.realpath(directory))


def check_target(drs: DRSPath) -> None:
    """A symlink anywhere on the way must lead to a file inside the same root."""
    # the directories are resolved once each, the file itself only when it is a link
    if os.path.islink(drs.path):
        target = drs.path.resolve()
    else:
        target = _resolved_dir(str(drs.path.parent)) / drs.path.name
    if not target.is_relative_to(drs.root.path):
        raise OutsideRoot(
            str(drs.path), f"is a symlink to {target}, outside the root {drs.root.path}"
        )
