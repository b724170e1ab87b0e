"""Drive the real esgf-pyclient (pyesgf 0.3.2) against an esg-search server.

Run with the pyesgf client venv:

    .venv-clients/pyesgf/bin/python tests/clients/drive_pyesgf.py http://127.0.0.1:PORT \
        --constraints '{"project": "CMIP6", "variable_id": ["tas", "pr"]}' \
        --facets source_id,variable_id --negate variable_id=tas

Prints ONE JSON object on stdout, keyed by distrib mode ("local" = distrib=False,
"distrib" = distrib=True). Every step is run independently; a failing step records
``{"error": "<ExceptionType>: <message>"}`` instead of its result, so the caller
decides what must pass. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

# pyesgf prints a long banner on stderr for facets=* with distrib=True.
os.environ.setdefault("ESGF_PYCLIENT_NO_FACETS_STAR_WARNING", "1")

from pyesgf.search import SearchConnection  # noqa: E402
from pyesgf.search.constraints import not_equals  # noqa: E402


def step(fn: Callable[[], Any]) -> Any:
    """Run one observation; turn an exception into an error record."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - we report, the test decides
        return {
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(limit=3),
        }


def describe_file(f: Any) -> dict[str, Any]:
    return {
        "file_id": f.file_id,
        "filename": f.filename,
        "size": f.size,
        "checksum": f.checksum,
        "checksum_type": f.checksum_type,
        "tracking_id": f.tracking_id,
        "download_url": f.download_url,
        "opendap_url": step(lambda: f.opendap_url),
    }


def observe(url: str, distrib: bool, args: argparse.Namespace) -> dict[str, Any]:
    conn = SearchConnection(url, distrib=distrib)
    constraints: dict[str, Any] = json.loads(args.constraints)
    ctx_kwargs: dict[str, Any] = {}
    if args.facets is not None:
        ctx_kwargs["facets"] = args.facets
    if args.latest is not None:
        ctx_kwargs["latest"] = args.latest == "true"
    ctx = conn.new_context(**ctx_kwargs, **constraints)

    out: dict[str, Any] = {"distrib": distrib}
    out["hit_count"] = step(lambda: ctx.hit_count)
    out["facet_counts"] = step(lambda: ctx.facet_counts)

    def datasets() -> list[dict[str, Any]]:
        return [
            {
                "id": ds.dataset_id,
                "number_of_files": ds.number_of_files,
                "index_node": ds.index_node,
            }
            for ds in ctx.search()
        ]

    out["datasets"] = step(datasets)

    def files() -> dict[str, Any]:
        results = ctx.search()
        if len(results) == 0:
            return {"dataset_id": None, "hit_count": 0, "files": []}
        ds = results[0]
        fctx = ds.file_context()
        return {
            "dataset_id": ds.dataset_id,
            "hit_count": fctx.hit_count,
            "files": [describe_file(f) for f in fctx.search()],
        }

    out["files"] = step(files)

    if args.negate:
        name, _, value = args.negate.partition("=")

        def negation() -> dict[str, Any]:
            nctx = ctx.constrain(**{name: not_equals(value)})
            return {
                "constraint": f"{name}!={value}",
                "hit_count": nctx.hit_count,
                "ids": [ds.dataset_id for ds in nctx.search()],
            }

        out["negation"] = step(negation)

    if distrib:
        out["shards"] = step(
            lambda: {h: [list(p) for p in v] for h, v in conn.get_shard_list().items()}
        )

    def wget() -> dict[str, Any]:
        script = ctx.get_download_script()
        return {"length": len(script), "head": script.splitlines()[: args.wget_lines]}

    if not args.no_wget:
        out["wget"] = step(wget)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="server root, e.g. http://127.0.0.1:8080 (no /esg-search)")
    p.add_argument("--prefix", default="/esg-search", help="path of the service below url")
    p.add_argument("--constraints", default='{"project": "CMIP6"}', help="JSON facet constraints")
    p.add_argument(
        "--facets", default=None, help="facets= for count queries (default: pyesgf's '*')"
    )
    p.add_argument("--latest", choices=["true", "false"], default=None)
    p.add_argument("--negate", default=None, help="NAME=VALUE, applied with not_equals()")
    p.add_argument("--mode", choices=["local", "distrib", "both"], default="both")
    p.add_argument("--no-wget", action="store_true")
    p.add_argument("--wget-lines", type=int, default=40)
    args = p.parse_args(argv)

    base = args.url.rstrip("/") + args.prefix
    result: dict[str, Any] = {"client": "esgf-pyclient", "base_url": base}
    if args.mode in ("local", "both"):
        result["local"] = step(lambda: observe(base, False, args))
    if args.mode in ("distrib", "both"):
        result["distrib"] = step(lambda: observe(base, True, args))
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
