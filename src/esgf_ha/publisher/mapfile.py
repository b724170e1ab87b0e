"""esgprep-compatible mapfiles (spec §2.2): one line per file,

    <master_id>.v<version> | <absolute path> | <size> | mod_time=<epoch> | checksum=<hex> | checksum_type=SHA256

We always write `mod_time`, `checksum`, `checksum_type` in that order (what esgcet's positional
parser expects) and read both the esgprep 3 head (`id.vN`) and the legacy one (`id#N`).
We add the optional key `tracking_id=` (esgcet copies mapfile keys into its file records, and
it is the value esgcet reads from the file anyway): with it, publishing from the mapfile needs
to open only a few files per dataset version instead of every file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from esgf_ha.publisher.errors import MapfileError

SEPARATOR = " | "
HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class MapLine:
    master_id: str
    version: str
    path: Path
    size: int
    mtime: float | None = None
    checksum: str | None = None
    checksum_type: str | None = None
    tracking_id: str | None = None

    def format(self) -> str:
        fields = [f"{self.master_id}.v{self.version}", str(self.path), str(self.size)]
        if self.mtime is not None:
            fields.append(f"mod_time={self.mtime!r}")
        if self.checksum is not None:
            fields.append(f"checksum={self.checksum}")
            fields.append(f"checksum_type={(self.checksum_type or 'SHA256').upper()}")
        if self.tracking_id:
            fields.append(f"tracking_id={self.tracking_id}")
        return SEPARATOR.join(fields)


def _head(text: str, where: str) -> tuple[str, str]:
    if "#" in text:
        master, _, version = text.partition("#")
        version = version.lstrip("v")
    else:
        master, _, last = text.rpartition(".")
        if not last.startswith("v"):
            raise MapfileError(f"{where}: dataset {text!r} must end with .v<version> or #<version>")
        version = last[1:]
    if not master or not version.isdigit():
        raise MapfileError(f"{where}: cannot read a dataset and version from {text!r}")
    return master, version


def parse_line(line: str, where: str) -> MapLine:
    parts = line.rstrip("\n").split(SEPARATOR)
    if len(parts) < 3:
        raise MapfileError(f"{where}: expected 'dataset | path | size [| key=value ...]'")
    master, version = _head(parts[0].strip(), where)
    path = Path(parts[1].strip())
    if not path.is_absolute():
        raise MapfileError(f"{where}: the path {str(path)!r} must be absolute")
    try:
        size = int(parts[2])
    except ValueError:
        raise MapfileError(f"{where}: size {parts[2]!r} is not an integer") from None
    if size < 0:
        raise MapfileError(f"{where}: size must not be negative")
    keys: dict[str, str] = {}
    for item in parts[3:]:
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise MapfileError(f"{where}: {item!r} is not key=value")
        keys[key] = value
    mtime = None
    if "mod_time" in keys:
        try:
            mtime = float(keys["mod_time"])
        except ValueError:
            raise MapfileError(f"{where}: mod_time {keys['mod_time']!r} is not a number") from None
    checksum = keys.get("checksum")
    checksum_type = keys.get("checksum_type", "SHA256" if checksum else None)
    if checksum is not None:
        checksum_type = (checksum_type or "SHA256").upper()
        want = {"SHA256": 64, "MD5": 32}.get(checksum_type)
        if want is None:
            raise MapfileError(f"{where}: checksum_type {checksum_type!r} is not SHA256 or MD5")
        if len(checksum) != want or not HEX.match(checksum):
            raise MapfileError(f"{where}: checksum is not a {checksum_type} hex digest")
    tracking_id = keys.get("tracking_id") or None
    return MapLine(master, version, path, size, mtime, checksum, checksum_type, tracking_id)


def read_mapfile(path: Path) -> list[MapLine]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MapfileError(f"cannot read mapfile {path}: {exc}") from None
    lines = [
        parse_line(line, f"{path}:{n}")
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise MapfileError(f"mapfile {path} holds no file lines")
    return lines
