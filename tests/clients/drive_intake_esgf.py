"""Drive the real intake-esgf (Solr index class) against an esg-search server.

Run with the intake_esgf client venv:

    .venv-clients/intake_esgf/bin/python tests/clients/drive_intake_esgf.py \
        http://127.0.0.1:PORT --search '{"source_id": "CESM2", "variable_id": ["tas", "pr"]}' \
        --file-info [--download] [--workdir DIR]

intake-esgf hard-codes ``https://<node>`` and the ``/esg-search/search`` path, and
``conf.set(indices=...)`` ignores unknown hosts, so (spec 5.2) we build the catalogue
with every built-in index disabled and swap in a ``SolrESGFIndex`` whose ``url`` is
our server root. Its configuration, request cache, log and download database live
under ``$HOME/.config/intake-esgf``; the driver points ``HOME`` at ``--workdir``
before importing the package so nothing leaks into the real home directory.

Prints ONE JSON object on stdout; failing steps are recorded as ``{"error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from typing import Any


def step(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - we report, the test decides
        return {
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(limit=4),
        }


def plain(value: Any) -> Any:
    """Make dataframe cells JSON-friendly (numpy scalars, lists, NaN)."""
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "url", help="server root, e.g. http://127.0.0.1:8080 (serves /esg-search/search)"
    )
    p.add_argument(
        "--search", default='{"project": "CMIP6"}', help="JSON keywords for cat.search()"
    )
    p.add_argument(
        "--file-info", action="store_true", help="also call index.get_file_info(dataset ids)"
    )
    p.add_argument(
        "--download", action="store_true", help="also run cat.to_path_dict() (needs a data node)"
    )
    p.add_argument("--distrib", action="store_true", help="SolrESGFIndex(distrib=True)")
    p.add_argument("--workdir", default=None, help="HOME and local cache for intake-esgf")
    args = p.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="intake-esgf-")
    os.makedirs(workdir, exist_ok=True)
    os.environ["HOME"] = workdir  # before the import: intake_esgf.conf reads ~/.config

    import intake_esgf
    from intake_esgf import ESGFCatalog
    from intake_esgf.core import SolrESGFIndex

    result: dict[str, Any] = {
        "client": "intake-esgf",
        "version": getattr(intake_esgf, "__version__", None),
        "workdir": workdir,
    }
    search_kw: dict[str, Any] = json.loads(args.search)
    netloc = args.url.split("://", 1)[-1].rstrip("/")

    with (
        warnings.catch_warnings(record=True) as caught,
        intake_esgf.conf.set(
            no_indices=True,
            indices={"esgf-node.ornl.gov": True},  # any Solr index, replaced below
            local_cache=[os.path.join(workdir, "esgf-cache")],
            esg_dataroot=[],
            requests_cache={"expire_after": "DO_NOT_CACHE"},
            break_on_error=True,
        ),
    ):
        warnings.simplefilter("always")
        cat = ESGFCatalog()
        idx = SolrESGFIndex(netloc, distrib=args.distrib)
        idx.url = args.url.rstrip("/")
        cat.indices = [idx]

        def do_search() -> dict[str, Any]:
            cat.search(quiet=True, **search_kw)
            df = cat.df
            return {
                "columns": [str(c) for c in df.columns],
                "n_rows": int(len(df)),
                "records": [
                    {str(k): plain(v) for k, v in row.items()} for row in df.to_dict("records")
                ],
            }

        result["search"] = step(do_search)

        if args.file_info and cat.df is not None:

            def file_info() -> list[dict[str, Any]]:
                ids = [i for ids in cat.df["id"] for i in ids]
                infos = idx.get_file_info(ids)
                return [
                    {k: plain(str(v) if k == "path" else v) for k, v in i.items()} for i in infos
                ]

            result["file_info"] = step(file_info)

        if args.download and cat.df is not None:

            def download() -> dict[str, Any]:
                paths = cat.to_path_dict(quiet=True)
                return {key: [str(x) for x in val] for key, val in paths.items()}

            result["download"] = step(download)

        result["warnings"] = [str(w.message) for w in caught]

    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
