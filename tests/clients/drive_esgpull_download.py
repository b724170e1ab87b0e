"""Download files with the real esgpull 0.10 (its `Processor`, `Filesystem` and checksum
check) from the data nodes the index's File records point at.

Run with the esgpull client venv:

    SSL_CERT_FILE=CA.pem .venv-clients/esgpull/bin/python \
        tests/clients/drive_esgpull_download.py http://127.0.0.1:PORT --workdir DIR \
        --selection '{"project": "CMIP6", "variable_id": "tas"}'

esgpull rewrites every `http://` file URL to `https://` and verifies with the default SSL
context, which honours `SSL_CERT_FILE`: the data node must serve HTTPS with a certificate
that CA signs. Files land under `DIR/data/<directory_format_template_>/<file>`.

Prints ONE JSON object: `{"client", "files": [{file_id, url, size, checksum, local_path,
status: "ok"|"bad_size"|"bad_checksum"|<error>}], "log": [...]}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from esgpull.config import Config
from esgpull.context.solr import SolrContext
from esgpull.fs import FileCheck, Filesystem
from esgpull.models import Query
from esgpull.models.selection import Selection
from esgpull.processor import Processor
from esgpull.result import Err, Ok


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:500])


async def download(cfg: Config, fs: Filesystem, files: list[Any]) -> dict[str, str]:
    status: dict[str, str] = {}
    processor = Processor(
        config=cfg, fs=fs, files=files, start_callbacks={f.sha: [] for f in files}
    )
    async for result in processor.process():
        match result:
            case Ok():
                ctx = result.data
                if not ctx.finished:
                    continue
                check = fs.check(ctx.file, ctx.digest)
                if check == FileCheck.Done:
                    fs.move_to_drs(ctx.file)
                    status[ctx.file.file_id] = "ok"
                else:
                    status[ctx.file.file_id] = str(check.name).lower()
            case Err(ctx, err):
                status[ctx.file.file_id] = f"{type(err).__name__}: {err}"
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="index root, e.g. http://127.0.0.1:8080")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--selection", default='{"project": "CMIP6"}', help="JSON facet selection")
    args = p.parse_args(argv)
    handler = ListHandler()
    logging.getLogger("esgpull").addHandler(handler)

    cfg = Config()
    cfg.api.index_node = args.url.rstrip("/") + "/esg-search/search"
    for name in ("data", "db", "log", "tmp", "plugins"):
        setattr(cfg.paths, name, (args.workdir / name).resolve())
    fs = Filesystem.from_config(cfg, install=True)
    selection: dict[str, Any] = json.loads(args.selection)
    Selection.configure(*selection, replace=False)
    ctx = SolrContext(config=cfg)
    files = ctx.files(Query(selection=selection, options={"distrib": False}))
    out: dict[str, Any] = {"client": "esgpull-download", "index_url": cfg.api.index_node}
    try:
        status = asyncio.run(download(cfg, fs, files))
    except BaseException as exc:  # noqa: BLE001 - report, never raise
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        status = {}
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["files"] = [
        {
            "file_id": f.file_id,
            "url": f.url,
            "size": f.size,
            "checksum": f.checksum,
            "local_path": str(fs[f].drs),
            "status": status.get(f.file_id, "not downloaded"),
        }
        for f in files
    ]
    out["log"] = handler.records
    json.dump(out, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
