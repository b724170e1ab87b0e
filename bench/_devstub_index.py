"""DEV STUB ONLY — never used for real figures.

Stand-ins for ``esgf_ha.index.service.IndexService`` and ``esgf-ha serve index`` so the
benchmark's plumbing can be tested before (or without) the real implementation.  Selected only
by ``search_bench.py --dev-stub``; results produced with it are flagged ``"dev_stub": true``.

The stub stores the records as JSON lines and answers searches by a naive in-memory scan
(exact facet matches, ``latest``, ``type``, ``dataset_id``, whole-word free text).  It is slow
and only meant for the ``tiny``/``10k`` tiers.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

KEYWORDS = {
    "offset",
    "limit",
    "query",
    "format",
    "facets",
    "fields",
    "distrib",
    "type",
    "latest",
    "sort",
    "shards",
    "from",
    "to",
}


class DevStubIndexService:
    def __init__(self, state_dir: pathlib.Path) -> None:
        self.state_dir = state_dir

    @classmethod
    def open(cls, state_dir: pathlib.Path) -> DevStubIndexService:
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls(state_dir)

    def bulk_load(
        self, datasets: Iterable[dict[str, Any]], files: Iterable[dict[str, Any]]
    ) -> None:
        for name, recs in (("datasets", datasets), ("files", files)):
            with (self.state_dir / f"{name}.jsonl").open("wb") as fh:
                for r in recs:
                    fh.write(orjson.dumps(r) + b"\n")

    def close(self) -> None:
        pass


def _values(rec: dict[str, Any], name: str) -> list[Any]:
    v = rec.get(name)
    if v is None:
        return []
    return [
        str(x).lower() if isinstance(x, bool) else x for x in (v if isinstance(v, list) else [v])
    ]


class _Store:
    def __init__(self, state_dir: pathlib.Path) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {}
        for t, name in (("Dataset", "datasets"), ("File", "files")):
            with (state_dir / f"{name}.jsonl").open("rb") as fh:
                self.records[t] = [orjson.loads(line) for line in fh]

    def search(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        single = dict(params)
        rtype = single.get("type", "Dataset")
        cons: dict[str, set[str]] = {}
        for k, v in params:
            if k not in KEYWORDS:
                cons.setdefault(k, set()).add(v)
        word = single.get("query", "*").lower()
        hits = []
        for r in self.records[rtype]:
            if "latest" in single and r.get("latest") != (single["latest"][:1] in "tT1"):
                continue
            if any(not cons[k] & set(_values(r, k)) for k in cons):
                continue
            if word != "*" and not any(
                word == str(v).lower() for f in r for v in _values(r, f) if isinstance(v, str)
            ):
                continue
            hits.append(r)
        facets = [f.strip() for f in single.get("facets", "").split(",") if f.strip()]
        fc: dict[str, list[Any]] = {}
        for f in facets:
            c = Counter(v for r in hits for v in _values(r, f))
            fc[f] = [x for k in sorted(c) for x in (k, c[k])]
        if rtype == "File":
            hits.sort(key=lambda r: r["id"])
        off, lim = int(single.get("offset", 0)), int(single.get("limit", 10))
        return {
            "responseHeader": {"status": 0, "QTime": 0, "params": {}},
            "response": {
                "numFound": len(hits),
                "start": off,
                "maxScore": 1.0,
                "docs": hits[off : off + lim],
            },
            "facet_counts": {
                "facet_queries": {},
                "facet_fields": fc,
                "facet_ranges": {},
                "facet_intervals": {},
                "facet_heatmaps": {},
            },
        }


def serve(state_dir: pathlib.Path, listen: str) -> None:
    store = _Store(state_dir)
    host, port = listen.rsplit(":", 1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path == "/readyz":
                body, code = b"ok", 200
            elif url.path == "/esg-search/search":
                body, code = orjson.dumps(store.search(parse_qsl(url.query))), 200
            else:
                body, code = b"not found", 404
            self.send_response(code)
            self.send_header("Content-Type", "text/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["serve"])
    ap.add_argument("--state-dir", required=True, type=pathlib.Path)
    ap.add_argument("--listen", required=True)
    a = ap.parse_args()
    serve(a.state_dir, a.listen)
    sys.exit(0)
