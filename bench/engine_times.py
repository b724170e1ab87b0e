"""Diagnostic: the search engine's own time per query class, in process, without HTTP.

    python bench/engine_times.py --state-dir /tmp/store100k --scale 100k

Loads the tier into --state-dir first if it holds no index. One thread, so the figures show
the engine's cost without the interpreter-lock waits that concurrent HTTP clients add.

    python bench/engine_times.py --state-dir /tmp/store1m --scale 1m --first-use

--first-use instead runs search_bench.py's timed mix (same seed) in its order twice in a
freshly opened index, as one worker meets it: the first pass pays every first use (posting
lists built, title words indexed), the second does not. It prints both passes per class and
the posting-list builds of the first (how many, their time, how many searches waited on one).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from esgf_ha.index import columns  # noqa: E402
from esgf_ha.index.params import parse_search  # noqa: E402
from esgf_ha.index.render import render_json  # noqa: E402
from esgf_ha.index.service import IndexService  # noqa: E402
from query_mix import build_mix  # noqa: E402
from synth import DEFAULT_SEED, SCALES, SyntheticIndex  # noqa: E402


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
    ap.add_argument(
        "--first-use",
        action="store_true",
        help="search_bench.py's mix twice in order: first uses against the steady state",
    )
    args = ap.parse_args()
    idx = SyntheticIndex(args.scale)
    fresh = not (args.state_dir / "index.sqlite3").exists()
    svc = IndexService.open(args.state_dir)
    if fresh:
        began = time.monotonic()
        svc.bulk_load(idx.iter_datasets(), () if args.no_files else idx.iter_files())
        print(f"loaded in {time.monotonic() - began:.1f} s")

    def run(q) -> None:
        req = parse_search(list(q.params), svc.known_fields())
        result, docs = svc.search(req)
        render_json(req, result, docs, "127.0.0.1:0", 0)

    if args.first_use:
        first_use(run, build_mix(idx, 5000, seed=DEFAULT_SEED + 1))
        svc.close()
        return
    by_class: dict[str, list] = {}
    for q in build_mix(idx, args.queries):
        by_class.setdefault(q.klass, []).append(q)

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


def first_use(run, mix: list) -> None:
    """Both passes over the mix; the posting-list builds are timed where they happen."""
    builds: list[float] = []
    build = columns._Postings.build.__func__  # type: ignore[attr-defined]

    def timed_build(cls, col, n):
        began = time.perf_counter()
        try:
            return build(cls, col, n)
        finally:
            builds.append((time.perf_counter() - began) * 1e3)

    columns._Postings.build = classmethod(timed_build)  # type: ignore[method-assign,assignment]
    passes: list[dict[str, list[float]]] = []
    waited = 0
    for _ in range(2):
        times: dict[str, list[float]] = {}
        for q in mix:
            before = len(builds)
            began = time.perf_counter()
            run(q)
            times.setdefault(q.klass, []).append((time.perf_counter() - began) * 1e3)
            if not passes and len(builds) > before:
                waited += 1
        passes.append(times)
    print(f"{'class':20s} {'pass':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for name in passes[0]:
        for i, times in enumerate(passes):
            ts = sorted(times[name])
            p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))]
            print(f"{name:20s} {i + 1:5d} {statistics.median(ts):8.2f} {p99:8.2f} {ts[-1]:8.1f}")
    print(
        f"posting lists built in pass 1: {len(builds)}, {sum(builds):.0f} ms in all, "
        f"longest {max(builds, default=0):.0f} ms; {waited} of {len(mix)} searches built one"
    )


if __name__ == "__main__":
    main()
