"""Search benchmark: our index server vs a PostgreSQL 15 reference on the same synthetic data.

    .venv/bin/python bench/search_bench.py --scale 100k [--duration S] [--concurrency C]
                                          [--skip-postgres] [--skip-ours]

Steps: (a) generate the records (timed), (b) bulk-load them with ``IndexService`` in a fresh
process (timed), (c) start ``esgf-ha serve index`` and time until ``/readyz`` is 200, (d) run
the query mix over HTTP with C concurrent clients (bounded by --duration and --max-requests),
checking every response, (e) record the server's memory, (f) load PostgreSQL and run the same
mix with C connections, cross-checking numFound/facets on a sample, (g) print a table and write
``bench/out/search-<scale>-<date>.json``.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

import httpx
import orjson
import psycopg

import pg_reference
from loadgen import MemorySampler, Outcome, RunResult, run_closed_loop, tree_memory
from ours import HttpAnswer, ServerProcess, http_worker, parse_answer, run_load_subprocess
from query_mix import MIX, Query, build_mix
from synth import DEFAULT_SEED, SCALES, SyntheticIndex

OUT_DIR = pathlib.Path(__file__).resolve().parent / "out"
Answer = HttpAnswer | pg_reference.PgAnswer


def free_port() -> int:
    return pg_reference.free_port()


# ---------------------------------------------------------------------------- steps
def time_generation(idx_factory: Any) -> tuple[SyntheticIndex, dict[str, Any]]:
    t0 = time.perf_counter()
    idx: SyntheticIndex = idx_factory()
    t1 = time.perf_counter()
    nd = sum(1 for _ in idx.iter_datasets())
    t2 = time.perf_counter()
    nf = sum(1 for _ in idx.iter_files())
    t3 = time.perf_counter()
    return idx, {
        "plan_s": round(t1 - t0, 3),
        "datasets_s": round(t2 - t1, 3),
        "files_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 3),
        "n_datasets": nd,
        "n_files": nf,
        "n_latest": int(idx.cols["latest"].sum()),
    }


def make_plausible(idx: SyntheticIndex) -> Any:
    n_latest = int(idx.cols["latest"].sum())
    n_ds, n_files = idx.tier.n_datasets, idx.tier.n_files

    def check(q: Query, out: Outcome) -> str | None:
        nf = out.num_found
        if nf is None:
            return "no numFound"
        if q.record_type == "File":
            return (
                None if nf == q.meta["expected"] else f"numFound {nf} != {q.meta['expected']} files"
            )
        if not 0 <= nf <= n_ds:
            return f"numFound {nf} outside [0, {n_ds}]"
        if q.klass == "metagrid_default" and nf != n_latest:
            return f"numFound {nf} != {n_latest} latest datasets"
        if q.klass in ("facets_constrained", "filter_only", "free_text") and nf < 1:
            return "numFound 0 for constraints taken from an existing dataset"
        return None

    del n_files
    return check


def crosscheck_sample(mix: list[Query], per_class: int) -> list[Query]:
    seen: dict[str, int] = {}
    out = []
    for q in mix:
        if seen.get(q.klass, 0) < per_class:
            seen[q.klass] = seen.get(q.klass, 0) + 1
            out.append(q)
    return out


async def bench_ours(
    args: argparse.Namespace,
    idx: SyntheticIndex,
    mix: list[Query],
    warm: list[Query],
    sample: list[Query],
    report: dict[str, Any],
) -> dict[str, HttpAnswer]:
    state_dir = pathlib.Path(args.state_dir or tempfile.mkdtemp(prefix="esgf-ha-bench-state-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    ours: dict[str, Any] = {"state_dir": str(state_dir), "dev_stub": args.dev_stub}
    report["ours"] = ours
    if args.reuse_state and (state_dir / "index.sqlite3").exists():
        # the same tier and seed loaded earlier (e.g. to measure a newer engine on it)
        print(f"[b] reusing the index already loaded in {state_dir}", flush=True)
        ours["load"] = {"reused": True}
    else:
        print(f"[b] bulk-loading our index into {state_dir} ...", flush=True)
        ours["load"] = run_load_subprocess(
            args.scale, args.seed, state_dir, args.dev_stub, timeout=args.load_timeout
        )
        print(f"    {ours['load']}", flush=True)
    server = ServerProcess(
        state_dir,
        args.port or free_port(),
        OUT_DIR / f"server-{args.scale}-{report['stamp']}.log",
        args.dev_stub,
        workers=args.workers,
        cpus=args.server_cpus,
    )
    answers: dict[str, HttpAnswer] = {}
    try:
        print(f"[c] starting server on 127.0.0.1:{server.port} ...", flush=True)
        ours["time_to_ready_s"] = round(server.start_and_wait(args.ready_timeout), 3)
        ours["memory_after_ready"] = tree_memory(server.pid)
        print(f"    ready in {ours['time_to_ready_s']} s, {ours['memory_after_ready']}", flush=True)
        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency
        )
        async with httpx.AsyncClient(
            base_url=server.base_url, limits=limits, timeout=args.request_timeout
        ) as client:
            workers = [http_worker(client) for _ in range(args.concurrency)]
            print(
                f"[d] warm-up {args.warmup:.0f}s, then {args.duration:.0f}s at concurrency "
                f"{args.concurrency} ...",
                flush=True,
            )
            await run_closed_loop(workers, warm, args.warmup, args.max_requests)
            sampler = MemorySampler(server.pid)
            sampler.start()
            res = await run_closed_loop(
                workers, mix, args.duration, args.max_requests, make_plausible(idx)
            )
            await sampler.stop()
            ours["run"] = res.summary()
            ours["memory_after_run"] = tree_memory(server.pid)
            ours["memory_max_sampled_rss_bytes"] = sampler.max_rss
            for q in sample:
                r = await client.get("/esg-search/search", params=list(q.params))
                if r.status_code == 200:
                    answers[q.query_string()] = parse_answer(r.content)
        _print_run("ours", res)
    finally:
        server.stop()
        if not args.keep_state and not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
    return answers


async def bench_postgres(
    args: argparse.Namespace,
    idx: SyntheticIndex,
    mix: list[Query],
    warm: list[Query],
    sample: list[Query],
    report: dict[str, Any],
) -> dict[str, pg_reference.PgAnswer]:
    pg_rep: dict[str, Any] = {}
    report["postgres"] = pg_rep
    answers: dict[str, pg_reference.PgAnswer] = {}
    with pg_reference.PgCluster() as pg:
        print(
            f"[f] PostgreSQL {pg_reference.PG_VERSION} on 127.0.0.1:{pg.port}, loading ...",
            flush=True,
        )
        t = pg_reference.load(pg.dsn, idx.iter_datasets(), idx.iter_files())
        pg_rep["load"] = {
            "datasets_copy_s": round(t.datasets_s, 3),
            "files_copy_s": round(t.files_s, 3),
            "indexes_s": round(t.indexes_s, 3),
            "analyze_s": round(t.analyze_s, 3),
            "total_s": round(t.total_s, 3),
            "db_size_bytes": t.db_size_bytes,
            "note": "COPY times include building the record dicts (see generation)",
        }
        print(f"    {pg_rep['load']}", flush=True)
        conns = [
            await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True)
            for _ in range(args.concurrency)
        ]
        try:

            def worker(conn: psycopg.AsyncConnection[Any]) -> Any:
                async def call(q: Query) -> Outcome:
                    ans = await pg_reference.answer_async(conn, q)
                    return Outcome(True, num_found=ans.num_found)

                return call

            workers = [worker(c) for c in conns]
            await run_closed_loop(workers, warm, args.warmup, args.max_requests)
            sampler = MemorySampler(pg.pid())
            sampler.start()
            res = await run_closed_loop(
                workers, mix, args.duration, args.max_requests, make_plausible(idx)
            )
            await sampler.stop()
            pg_rep["run"] = res.summary()
            pg_rep["memory_after_run"] = tree_memory(pg.pid())
            pg_rep["memory_max_sampled_pss_bytes"] = sampler.max_pss
            for q in sample:
                answers[q.query_string()] = await pg_reference.answer_async(conns[0], q)
        finally:
            for c in conns:
                await c.close()
        _print_run("postgres", res)
    return answers


def compare(
    sample: list[Query], ours: dict[str, HttpAnswer], pg: dict[str, pg_reference.PgAnswer]
) -> dict[str, Any]:
    mismatches: list[dict[str, Any]] = []
    compared = 0
    for q in sample:
        key = q.query_string()
        a, b = ours.get(key), pg.get(key)
        if a is None or b is None:
            mismatches.append({"class": q.klass, "query": key, "why": "missing answer"})
            continue
        compared += 1
        why = []
        if a.num_found != b.num_found:
            why.append(f"numFound ours={a.num_found} pg={b.num_found}")
        for f in q.facets:
            if a.facets.get(f, {}) != b.facets.get(f, {}):
                why.append(f"facet {f} differs")
        if q.record_type == "File" and a.ids != b.ids:
            why.append("file page ids differ")
        if why:
            mismatches.append({"class": q.klass, "query": key[:400], "why": why})
    return {"compared": compared, "mismatches": len(mismatches), "details": mismatches[:50]}


# --------------------------------------------------------------------------- reporting
def _print_run(name: str, res: RunResult) -> None:
    s = res.summary()
    print(
        f"    {name}: {s['requests']} requests in {s['elapsed_s']} s = {s['throughput_rps']} /s, "
        f"errors {s['errors']}, implausible {s['implausible']}",
        flush=True,
    )


def _fmt(x: Any) -> str:
    return f"{x:10.2f}" if isinstance(x, int | float) else f"{'-':>10s}"


def _ratio(a: Any, b: Any) -> Any:
    return (
        round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    )


def print_table(report: dict[str, Any]) -> dict[str, Any]:
    ours = report.get("ours", {}).get("run", {})
    pg = report.get("postgres", {}).get("run", {})
    ratios: dict[str, Any] = {}
    print()
    print(
        f"{'class':20s} {'ours p50':>10s} {'ours p99':>10s} {'pg p50':>10s} {'pg p99':>10s} "
        f"{'p50 o/pg':>10s} {'p99 o/pg':>10s}   (ms)"
    )
    for k in [*MIX, "overall"]:
        o = ours.get("overall" if k == "overall" else "per_class", {})
        p = pg.get("overall" if k == "overall" else "per_class", {})
        if k != "overall":
            o, p = o.get(k, {}), p.get(k, {})
        r50, r99 = (
            _ratio(o.get("p50_ms"), p.get("p50_ms")),
            _ratio(o.get("p99_ms"), p.get("p99_ms")),
        )
        ratios[k] = {"p50": r50, "p99": r99}
        print(
            f"{k:20s} {_fmt(o.get('p50_ms'))} {_fmt(o.get('p99_ms'))} {_fmt(p.get('p50_ms'))} "
            f"{_fmt(p.get('p99_ms'))} {_fmt(r50)} {_fmt(r99)}"
        )
    qt = ours.get("server_time", {})
    if qt.get("overall", {}).get("n"):
        print(
            f"\n{'class':20s} {'QTime p50':>10s} {'QTime p99':>10s} {'pg p50':>10s} {'pg p99':>10s} "
            f"{'p50 o/pg':>10s} {'p99 o/pg':>10s}   (ms; our server-side search time, Server-Timing)"
        )
        for k in [*MIX, "overall"]:
            o = qt.get("overall") if k == "overall" else qt.get("per_class", {}).get(k, {})
            p = pg.get("overall", {}) if k == "overall" else pg.get("per_class", {}).get(k, {})
            r50, r99 = (
                _ratio(o.get("p50_ms"), p.get("p50_ms")),
                _ratio(o.get("p99_ms"), p.get("p99_ms")),
            )
            ratios[f"server_time_{k}"] = {"p50": r50, "p99": r99}
            print(
                f"{k:20s} {_fmt(o.get('p50_ms'))} {_fmt(o.get('p99_ms'))} {_fmt(p.get('p50_ms'))} "
                f"{_fmt(p.get('p99_ms'))} {_fmt(r50)} {_fmt(r99)}"
            )
    rt = _ratio(ours.get("throughput_rps"), pg.get("throughput_rps"))
    ratios["throughput"] = rt
    print(
        f"{'throughput (/s)':20s} {_fmt(ours.get('throughput_rps'))} {'':10s} "
        f"{_fmt(pg.get('throughput_rps'))} {'':10s} {_fmt(rt)}"
    )
    g = report["generation"]
    print(f"\ngeneration: {g['total_s']} s ({g['n_datasets']} datasets, {g['n_files']} files)")
    if "ours" in report:
        o = report["ours"]
        print(
            f"ours: bulk load {o['load'].get('bulk_load_s')} s, time-to-ready "
            f"{o.get('time_to_ready_s')} s, VmRSS {o.get('memory_after_run', {}).get('rss_bytes', 0) / 2**20:.0f} MiB, "
            f"VmHWM {o.get('memory_after_run', {}).get('hwm_bytes', 0) / 2**20:.0f} MiB"
        )
    if "postgres" in report:
        p = report["postgres"]
        print(
            f"postgres: load {p['load']['total_s']} s, db size {p['load']['db_size_bytes'] / 2**20:.0f} MiB, "
            f"PSS {p.get('memory_after_run', {}).get('pss_bytes', 0) / 2**20:.0f} MiB"
        )
    if "crosscheck" in report:
        c = report["crosscheck"]
        print(f"cross-check vs postgres: {c['compared']} compared, {c['mismatches']} mismatches")
        for m in c["details"][:10]:
            print(f"   {m['class']}: {m['why']}  {m['query'][:160]}")
    return ratios


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="100k", choices=sorted(SCALES))
    ap.add_argument("--duration", type=float, default=60.0, help="timed run per system, seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="warm-up per system, seconds")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-requests", type=int, default=200_000, help="hard cap per timed run")
    ap.add_argument("--mix-size", type=int, default=5000, help="distinct queries in the mix")
    ap.add_argument("--crosscheck", type=int, default=20, help="sampled queries per class")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--port", type=int, default=0, help="our server's port (default: free port)")
    ap.add_argument("--state-dir", default=None, help="our state dir (default: temp, deleted)")
    ap.add_argument("--keep-state", action="store_true")
    ap.add_argument(
        "--reuse-state",
        action="store_true",
        help="skip the load when --state-dir already holds an index of this tier",
    )
    ap.add_argument(
        "--workers", type=int, default=1, help="our server's worker processes (--workers)"
    )
    ap.add_argument(
        "--server-cpus",
        default=None,
        metavar="LIST",
        help="run our server on these CPUs only (taskset -c LIST, e.g. 0 or 0,1); the load "
        "generator and PostgreSQL are not pinned",
    )
    ap.add_argument("--load-timeout", type=float, default=3600.0)
    ap.add_argument("--ready-timeout", type=float, default=600.0)
    ap.add_argument("--request-timeout", type=float, default=120.0)
    ap.add_argument(
        "--dev-stub",
        action="store_true",
        help="DEV ONLY: use bench/_devstub_index.py instead of esgf_ha (tiny tiers)",
    )
    return ap.parse_args(argv)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    OUT_DIR.mkdir(exist_ok=True)
    now = dt.datetime.now()
    report: dict[str, Any] = {
        "benchmark": "search",
        "scale": args.scale,
        "stamp": now.strftime("%Y%m%d-%H%M%S"),
        "started": now.isoformat(timespec="seconds"),
        "tier": {
            "n_datasets": SCALES[args.scale].n_datasets,
            "n_files": SCALES[args.scale].n_files,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {k: v for k, v in vars(args).items()},
        "mix_weights": MIX,
    }
    print(f"[a] generating the {args.scale} tier ...", flush=True)
    idx, report["generation"] = time_generation(lambda: SyntheticIndex(args.scale, args.seed))
    print(f"    {report['generation']}", flush=True)
    mix = build_mix(idx, args.mix_size, seed=args.seed + 1)
    warm = build_mix(idx, 500, seed=args.seed + 2)
    sample = crosscheck_sample(mix, args.crosscheck)
    ours_answers: dict[str, HttpAnswer] = {}
    pg_answers: dict[str, pg_reference.PgAnswer] = {}
    if not args.skip_ours:
        ours_answers = await bench_ours(args, idx, mix, warm, sample, report)
    if not args.skip_postgres:
        pg_answers = await bench_postgres(args, idx, mix, warm, sample, report)
    if ours_answers and pg_answers:
        report["crosscheck"] = compare(sample, ours_answers, pg_answers)
    report["ratios_ours_over_pg"] = print_table(report)
    report["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    out = OUT_DIR / f"search-{args.scale}-{report['stamp']}.json"
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"\nwrote {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0:
        sys.exit("--concurrency must be >= 1 and --duration > 0")
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
