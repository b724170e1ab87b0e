"""Diagnostic: the search engine's own time per query class, in process, without HTTP.

    python bench/engine_times.py --state-dir /tmp/store100k --scale 100k

Loads the tier into --state-dir first if it holds no index. One thread, so the figures show
the engine's cost without the interpreter-lock waits that concurrent HTTP clients add.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from esgf_ha.index.params import parse_search  # noqa: E402
from esgf_ha.index.render import render_json  # noqa: E402
from esgf_ha.index.service import IndexService  # noqa: E402
from query_mix import build_mix  # noqa: E402
from synth import SCALES, SyntheticIndex  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state-dir", type=pathlib.Path, required=True)
    ap.add_argument("--scale", default="100k", choices=sorted(SCALES))
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument(
        "--no-files",
        action="store_true",
        help="load Dataset records only (quicker; File searches then find nothing)",
    )
    args = ap.parse_args()
    idx = SyntheticIndex(args.scale)
    fresh = not (args.state_dir / "index.sqlite3").exists()
    svc = IndexService.open(args.state_dir)
    if fresh:
        began = time.monotonic()
        svc.bulk_load(idx.iter_datasets(), () if args.no_files else idx.iter_files())
        print(f"loaded in {time.monotonic() - began:.1f} s")
    by_class: dict[str, list] = {}
    for q in build_mix(idx, args.queries):
        by_class.setdefault(q.klass, []).append(q)

    def run(q) -> None:
        req = parse_search(list(q.params), svc.known_fields())
        result, docs = svc.search(req)
        render_json(req, result, docs, "127.0.0.1:0", 0)

    for name, queries in by_class.items():
        for q in queries[:3]:
            run(q)
        times = []
        for q in queries:
            began = time.perf_counter()
            run(q)
            times.append((time.perf_counter() - began) * 1e3)
        print(
            f"{name:20s} {len(queries):5d} queries  p50 {statistics.median(times):8.2f} ms"
            f"  mean {statistics.fmean(times):8.2f} ms  max {max(times):8.1f} ms"
        )
    svc.close()


if __name__ == "__main__":
    main()
