"""Drive the real esgpull 0.10 Python API (SolrContext) against an esg-search server.

Run with the esgpull client venv:

    .venv-clients/esgpull/bin/python tests/clients/drive_esgpull.py http://127.0.0.1:PORT \
        --selection '{"project": "CMIP6", "variable_id": ["tas", "pr"]}' \
        --facets variable_id,source_id --negate variable_id=tas --wildcard variable_id='t*' \
        --text CESM2

esgpull takes the index as the *full search URL* (a value with a scheme is used
verbatim; a bare host becomes ``https://<host>/esg-search/search``) and refuses a
host without a dot, so use ``127.0.0.1``, not ``localhost``. Everything it selects
is sent as Lucene syntax in ``query=`` (spec 5.3). We use ``Config()`` (a virtual
config, no install directory, no database) and never the CLI, whose start-up opens a
STAC client to a public host.

Prints ONE JSON object on stdout; failing steps are recorded as ``{"error": ...}``.
The ``log`` list carries esgpull's own warnings (e.g. "File ... has invalid metadata").
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

from esgpull.config import Config
from esgpull.context.solr import SolrContext
from esgpull.models import Query
from esgpull.models.selection import Selection


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:500])


def step(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BaseException as exc:  # noqa: BLE001 - ExceptionGroup from esgpull's fetcher too
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        subs = getattr(exc, "exceptions", None)
        return {
            "error": f"{type(exc).__name__}: {exc}",
            "sub_errors": [f"{type(e).__name__}: {e}" for e in subs] if subs else [],
            "trace": traceback.format_exc(limit=4),
        }


def pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="server root, e.g. http://127.0.0.1:8080")
    p.add_argument("--search-path", default="/esg-search/search")
    p.add_argument("--selection", default='{"project": "CMIP6"}', help="JSON facet selection")
    p.add_argument("--facets", default="variable_id", help="comma list for hints()")
    p.add_argument("--negate", type=pair, default=None, help="NAME=VALUE -> selection['!NAME']")
    p.add_argument("--wildcard", type=pair, default=None, help="NAME=PATTERN, e.g. variable_id=t*")
    p.add_argument("--text", default=None, help="free-text term -> selection['query']")
    p.add_argument("--distrib", choices=["true", "false"], default="false")
    p.add_argument("--max-hits", type=int, default=None, help="cap for datasets()/files()")
    p.add_argument("--page-limit", type=int, default=None, help="override api.page_limit (50)")
    args = p.parse_args(argv)

    handler = ListHandler()
    logging.getLogger("esgpull").addHandler(handler)

    cfg = Config()
    cfg.api.index_node = args.url.rstrip("/") + args.search_path
    if args.page_limit:
        cfg.api.page_limit = args.page_limit
    ctx = SolrContext(config=cfg)

    selection: dict[str, Any] = json.loads(args.selection)
    extra = [n.lstrip("!") for n in selection]
    extra += [x[0] for x in (args.negate, args.wildcard) if x]
    Selection.configure(*extra, replace=False)  # accept any facet name we were given

    options = {"distrib": args.distrib == "true"}

    def query(drop: str | None = None, **more: Any) -> Query:
        # esgpull refuses NAME and !NAME in one selection (AlreadySetFacet): drop NAME.
        sel = {k: v for k, v in selection.items() if k != drop}
        return Query(selection={**sel, **more}, options=options)

    facets = [f for f in args.facets.split(",") if f]
    base = query()
    out: dict[str, Any] = {"client": "esgpull", "index_url": cfg.api.index_node}
    out["probe"] = step(lambda: ctx.probe() or "ok")
    out["hits"] = step(
        lambda: {"datasets": ctx.hits(base, file=False)[0], "files": ctx.hits(base, file=True)[0]}
    )
    out["hints"] = step(lambda: ctx.hints(base, file=False, facets=facets)[0])
    out["datasets"] = step(lambda: [d.asdict() for d in ctx.datasets(base, max_hits=args.max_hits)])

    def files() -> list[dict[str, Any]]:
        return [
            {k: v for k, v in f.asdict().items() if k != "status"}
            for f in ctx.files(base, max_hits=args.max_hits)
        ]

    out["files"] = step(files)

    def count(q: Query) -> dict[str, Any]:
        ds = ctx.datasets(q, max_hits=args.max_hits)
        return {"hits": ctx.hits(q, file=False)[0], "dataset_ids": [d.dataset_id for d in ds]}

    if args.negate:
        name, value = args.negate
        out["negation"] = step(
            lambda: {
                "selection": f"!{name}={value}",
                **count(query(drop=name, **{f"!{name}": value})),
            }
        )
    if args.wildcard:
        name, value = args.wildcard
        out["wildcard"] = step(
            lambda: {"selection": f"{name}={value}", **count(query(drop=name, **{name: value}))}
        )
    if args.text:
        out["free_text"] = step(
            lambda: {"selection": f"query={args.text}", **count(query(query=args.text))}
        )
    out["log"] = handler.records
    json.dump(out, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
