"""The data node's decisions, without HTTP: where a URL path lives, what the index says
about it (checksum, other sites holding it), and which roots are healthy."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from esgf_ha.datanode.errors import IndexUnavailable, NotFound
from esgf_ha.datanode.index_client import IndexClient, Record
from esgf_ha.datanode.paths import Located, file_instance_id, locate
from esgf_ha.datanode.settings import DataSettings

log = logging.getLogger("esgf_ha.datanode")


def http_url(record: Record) -> str | None:
    """A File record's HTTPServer download URL: the one access a client can be sent to."""
    for url in record.get("url") or []:
        parts = str(url).split("|")
        if len(parts) == 3 and parts[2] == "HTTPServer":
            return parts[0]
    return None


class DataNode:
    """What a data node knows and decides, kept apart from HTTP so the app only translates:
    its roots, which of them need a token, and the index it asks about files."""

    def __init__(self, settings: DataSettings, index: IndexClient | None) -> None:
        """Without an `index` the node serves its disks alone: no checksums, no redirects."""
        self.settings = settings
        self.roots: dict[str, Path] = {k: Path(v) for k, v in settings.roots.items()}
        self.restricted = frozenset(settings.restricted)
        self.index = index

    def locate(self, url_path: str) -> Located:
        """The file a URL path names under our roots; refuses paths that would leave them."""
        return locate(self.roots, url_path)

    async def file_records(self, rel: str) -> list[Record]:
        """The index's File records for a DRS path; empty when it cannot say."""
        instance = file_instance_id(rel)
        if self.index is None or instance is None:
            return []
        try:
            return await self.index.file_records(instance)
        except IndexUnavailable as exc:
            log.warning("index lookup failed", extra={"instance_id": instance, "error": str(exc)})
            return []

    async def checksum(self, rel: str, size: int) -> tuple[str | None, str | None]:
        """The published checksum and its type for the file at `rel`, if the index has one
        for a file of this size; (None, None) when it cannot say."""
        for rec in await self.file_records(rel):
            checksum, ctype = rec.get("checksum"), rec.get("checksum_type")
            checksum = checksum[0] if isinstance(checksum, list) else checksum
            ctype = ctype[0] if isinstance(ctype, list) else ctype
            # a record for another size describes other bytes (a stale or corrupt copy)
            if checksum and int(rec.get("size", size) or size) == size:
                return str(checksum), str(ctype or "")
        return None, None

    async def elsewhere(self, loc: Located, own_hosts: set[str]) -> str:
        """The URL of another data node holding a file this node lacks; NotFound if none."""
        instance = file_instance_id(loc.rel)
        if self.index is None or instance is None:
            raise NotFound("no such file")
        records = await self.index.file_records(instance)  # IndexUnavailable → 503
        if not records:
            raise NotFound("no such file, and the index knows no file at this path")
        for rec in records:
            url = http_url(rec)
            if url is None:
                continue
            host = urlsplit(url).netloc
            if str(rec.get("data_node", "")) in own_hosts or host in own_hosts:
                continue
            return url
        raise NotFound("the file is published for this node but missing from its disk")

    def not_ready(self) -> list[str]:
        """Why the node cannot serve (a root gone, unreadable or hung); empty when ready.
        Listing a root, not just testing it, catches a stale network mount."""
        problems = []
        for name, path in self.roots.items():
            try:
                if not path.is_dir():
                    problems.append(f"root {name}: {path} is not a directory")
                elif not os.access(path, os.R_OK | os.X_OK):
                    problems.append(f"root {name}: {path} is not readable")
                else:
                    with os.scandir(path) as it:
                        next(it, None)
            except OSError as exc:
                problems.append(f"root {name}: {exc}")
        return problems

    async def close(self) -> None:
        """Release the index client's connections at shutdown."""
        if self.index is not None:
            await self.index.close()

    def describe(self) -> dict[str, Any]:
        """The configuration readiness reports, for an operator checking what is served."""
        return {
            "roots": {k: str(v) for k, v in self.roots.items()},
            "restricted": sorted(self.restricted),
            "index": self.settings.index_url,
        }
