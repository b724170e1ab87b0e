"""Index replication benchmark: a master and three replicas as real processes on loopback.

Measures, each against a reference taken in the same run:

1. publish-to-visible on 3 replicas (p50/p99/max), from the publish answer (the commit) to the
   moment each replica has applied the batch, seen through the replica's own change feed
   (long-poll) and confirmed with a search. Reference: the classic ESGF replication timer
   (60 s locally: a change waits uniformly 0-60 s, p99 59.4 s), and the same figure measured
   here for replicas that poll every second instead of long-polling is not needed: the ratio
   against 60 s is printed.
2. catch-up: one replica paused while the master takes N file records in batches, then
   resumed; records applied per second. Reference: a plain copy of the master's store file,
   in records per second.
3. search latency on a replica, idle vs while it applies a heavy publication stream (the other
   two replicas are paused so the 2-core machine runs master + one replica + the client).
4. bootstrap of a large index (`--bootstrap-scale`, default 100k = 100k datasets + 1M files,
   bulk-loaded into a master): a new replica from process start to ready. Reference: copying
   the master's state files (store + facet snapshot) with `cp`.

    .venv/bin/python bench/replication_bench.py                     # everything (~10 min)
    .venv/bin/python bench/replication_bench.py --skip-bootstrap    # parts 1-3 only (~3 min)
    .venv/bin/python bench/replication_bench.py --only-bootstrap --bootstrap-scale 10k

Results are printed and written to bench/out/replication-<date>.json.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress

BENCH_DIR = pathlib.Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

from tests.replicas import caught_up, seq_of, start_master, start_replica  # noqa: E402
from tests.servers import IndexServer  # noqa: E402

from esgf_ha.records.samples import cmip6_samples  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
ESGF_TIMER_S = 60.0
console = Console()


def batch_of(seed: int, files: int) -> dict:
    """A new dataset (its own ensemble member, so no older version to demote) of `files`
    files (copies of a sample file under new ids)."""
    sample = cmip6_samples(1)[0]
    label = sample.dataset["variant_label"]
    variant = str(label[0] if isinstance(label, list) else label)
    blob = orjson.dumps({"dataset": sample.dataset, "file": sample.files[0]}).decode()
    entry = orjson.loads(blob.replace(variant, f"r{seed}i1p1f1"))
    dataset, template = entry["dataset"], entry["file"]
    out = []
    for i in range(files):
        record = dict(template)
        name = f"part{i:06d}.nc"
        record["id"] = record["id"].replace(record["title"], name)
        record["title"] = name
        record["tracking_id"] = f"hdl:21.14100/{seed:06d}-{i:08d}"
        record["checksum"] = [f"{seed:08x}{i:056x}"]
        out.append(record)
    dataset["number_of_files"] = files
    return {"datasets": [{"dataset": dataset, "files": out}]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def post(server: IndexServer, path: str) -> None:
    with server.client() as c:
        r = c.post(path, headers=server.auth("esgf:replicate"))
    r.raise_for_status()


# ------------------------------------------------------------------------ 1. publish-to-visible
def publish_to_visible(master: IndexServer, replicas: list[IndexServer], n: int) -> dict:
    delays: list[float] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("publish-to-visible", total=n)
        for i in range(n):
            since = seq_of(master)
            seen: dict[int, float] = {}

            def watch(k: int, replica: IndexServer, since: int = since, seen: dict = seen) -> None:
                with replica.client() as c:
                    auth = replica.auth("esgf:replicate")
                    while True:
                        r = c.get(
                            "/api/v1/changes",
                            params={"since": since, "limit": 1, "wait": 10},
                            headers=auth,
                        )
                        if r.json()["changes"]:
                            seen[k] = time.perf_counter()
                            return

            watchers = [threading.Thread(target=watch, args=(k, r)) for k, r in enumerate(replicas)]
            for w in watchers:
                w.start()
            time.sleep(0.02)  # the long-polls are waiting
            batch = batch_of(10_000 + i, 20)
            with master.client() as c:
                r = c.post("/api/v1/publish", content=orjson.dumps(batch), headers=master.auth())
            committed = time.perf_counter()
            r.raise_for_status()
            for w in watchers:
                w.join(30)
            ds = batch["datasets"][0]["dataset"]["id"]
            for k, replica in enumerate(replicas):
                assert replica.search(id=ds, limit=0)["response"]["numFound"] == 1
                delays.append(max(0.0, seen[k] - committed))
            progress.advance(task)
    return {
        "publications": n,
        "observations": len(delays),
        "p50_s": round(pct(delays, 50), 4),
        "p99_s": round(pct(delays, 99), 4),
        "max_s": round(max(delays), 4),
        "reference_esgf_timer_p99_s": ESGF_TIMER_S * 0.99,
        "ratio_vs_esgf_timer_p99": round(ESGF_TIMER_S * 0.99 / max(pct(delays, 99), 1e-6), 1),
    }


# ------------------------------------------------------------------------------- 2. catch-up
def catch_up(master: IndexServer, replica: IndexServer, files: int, per_batch: int) -> dict:
    post(replica, "/api/v1/replication/pause")
    batches = files // per_batch
    began = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"publishing {files} files (replica paused)", total=batches)
        for i in range(batches):
            r = master.publish(batch_of(20_000 + i, per_batch))
            r.raise_for_status()
            progress.advance(task)
    publish_s = time.perf_counter() - began
    records = batches * (per_batch + 1)
    t0 = time.perf_counter()
    post(replica, "/api/v1/replication/resume")
    caught_up(replica, master, timeout=600)
    apply_s = time.perf_counter() - t0
    # reference: a plain copy of the master's store, as a file, in records per second
    store = master.state_dir / "index.sqlite3"
    with tempfile.TemporaryDirectory(dir=master.state_dir.parent) as tmp:
        t1 = time.perf_counter()
        for suffix in ("", "-wal"):
            src = pathlib.Path(str(store) + suffix)
            if src.exists():
                shutil.copyfile(src, pathlib.Path(tmp) / src.name)
        os.sync()
        copy_s = time.perf_counter() - t1
    total = master.search(type="File", limit=0)["response"]["numFound"]
    total += master.search(type="Dataset", limit=0)["response"]["numFound"]
    rate = records / apply_s
    copy_rate = total / copy_s
    return {
        "file_records": batches * per_batch,
        "records": records,
        "entries": batches,
        "master_publish_s": round(publish_s, 2),
        "apply_s": round(apply_s, 3),
        "records_per_s": round(rate),
        "reference_file_copy_records_per_s": round(copy_rate),
        "ratio_vs_file_copy": round(rate / copy_rate, 3),
    }


# ------------------------------------------------------------------- 3. search under a stream
QUERIES: list[dict[str, str | int]] = [
    {"type": "Dataset", "limit": 10, "facets": "source_id,experiment_id,variable_id"},
    {"type": "File", "limit": 10},
    {"type": "Dataset", "query": "temperature", "limit": 10},
    {"type": "Dataset", "limit": 10, "latest": "true", "facets": "institution_id"},
]


def search_latencies(replica: IndexServer, seconds: float) -> list[float]:
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    with replica.client() as c:
        while time.perf_counter() < deadline:
            params = {"format": "application/solr+json", **QUERIES[i % len(QUERIES)]}
            t = time.perf_counter()
            r = c.get("/esg-search/search", params=params)
            out.append(time.perf_counter() - t)
            assert r.status_code == 200
            i += 1
    return out


def search_under_stream(
    master: IndexServer, replica: IndexServer, seconds: float, per_batch: int
) -> dict:
    idle = search_latencies(replica, seconds)
    stop = threading.Event()
    published = [0]

    def stream() -> None:
        i = 0
        while not stop.is_set():
            master.publish(batch_of(40_000 + i, per_batch)).raise_for_status()
            published[0] += per_batch + 1
            i += 1

    start_seq = seq_of(replica)
    publisher = threading.Thread(target=stream)
    publisher.start()
    time.sleep(1.0)
    busy = search_latencies(replica, seconds)
    stop.set()
    publisher.join()
    caught_up(replica, master, timeout=120)
    applied_entries = seq_of(replica) - start_seq

    def summary(xs: list[float]) -> dict:
        return {
            "n": len(xs),
            "p50_ms": round(pct(xs, 50) * 1000, 2),
            "p99_ms": round(pct(xs, 99) * 1000, 2),
            "mean_ms": round(statistics.fmean(xs) * 1000, 2),
        }

    s_idle, s_busy = summary(idle), summary(busy)
    return {
        "idle": s_idle,
        "busy": s_busy,
        "stream_records": published[0],
        "stream_entries_applied": applied_entries,
        "ratio_p50": round(s_busy["p50_ms"] / s_idle["p50_ms"], 2),
        "ratio_mean": round(s_busy["mean_ms"] / s_idle["mean_ms"], 2),
    }


# ------------------------------------------------------------------------------ 4. bootstrap
def bulk_load(state: pathlib.Path, scale: str) -> float:
    with console.status(f"bulk-loading the {scale} synthetic index into a master"):
        t = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                str(BENCH_DIR / "ours.py"),
                "load",
                "--scale",
                scale,
                "--state-dir",
                str(state),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        return time.perf_counter() - t


def bootstrap(root: pathlib.Path, scale: str) -> dict:
    state = root / f"boot-master-{scale}"
    shutil.rmtree(root / f"boot-replica-{scale}", ignore_errors=True)
    load_s: float | None = None
    if (state / "index.sqlite3").exists():
        console.print(f"reusing the master in {state} (kept with --state-dir)")
    else:
        load_s = bulk_load(state, scale)
    master = IndexServer(state).start(timeout=600)
    try:
        files = master.search(type="File", limit=0)["response"]["numFound"]
        datasets = master.search(type="Dataset", limit=0)["response"]["numFound"]
        t = time.perf_counter()
        with console.status("bootstrapping a new replica"):
            replica = start_replica(root / f"boot-replica-{scale}", master, timeout=900)
        boot_s = time.perf_counter() - t
        try:
            assert replica.search(type="File", limit=0)["response"]["numFound"] == files
        finally:
            replica.stop()
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            t = time.perf_counter()
            subprocess.run(["cp", "-r", str(state / "index.sqlite3"), tmp], check=True)
            if (state / "facets.snapshot").exists():
                subprocess.run(["cp", "-r", str(state / "facets.snapshot"), tmp], check=True)
            os.sync()
            copy_s = time.perf_counter() - t
        size = (state / "index.sqlite3").stat().st_size
    finally:
        master.stop()
    return {
        "scale": scale,
        "files": files,
        "datasets": datasets,
        "store_bytes": size,
        "bulk_load_s": None if load_s is None else round(load_s, 1),
        "bootstrap_s": round(boot_s, 2),
        "reference_cp_s": round(copy_s, 2),
        "ratio_vs_cp": round(boot_s / copy_s, 2),
    }


def pin(pid: int, cpu: int) -> None:
    """Every thread of a process onto one CPU (affinity is per thread on Linux)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


class _Skip(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--publications", type=int, default=100, help="part 1 sample size")
    ap.add_argument("--catchup-files", type=int, default=100_000)
    ap.add_argument("--batch-files", type=int, default=2000)
    ap.add_argument("--search-seconds", type=float, default=20.0)
    ap.add_argument("--bootstrap-scale", default="100k")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="part 3: master and this client on CPU 1, the measured replica on CPU 0 "
        "(as if the master ran elsewhere)",
    )
    ap.add_argument("--skip-bootstrap", action="store_true", help="parts 1-3 only")
    ap.add_argument("--only-bootstrap", action="store_true", help="part 4 only")
    ap.add_argument("--state-dir", type=pathlib.Path, help="keep state here (default: temp)")
    args = ap.parse_args()

    root = args.state_dir or pathlib.Path(tempfile.mkdtemp(prefix="repl-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    master = start_master(root / "master")
    servers = [master]
    try:
        if args.only_bootstrap:
            raise _Skip
        master.publish(batch_of(1, 10)).raise_for_status()
        replicas = [start_replica(root / f"replica{k}", master) for k in (1, 2, 3)]
        servers += replicas
        results["publish_to_visible"] = r1 = publish_to_visible(master, replicas, args.publications)
        console.print(f"[bold]1. publish-to-visible[/] on 3 replicas: {r1}")
        results["catch_up"] = r2 = catch_up(
            master, replicas[0], args.catchup_files, args.batch_files
        )
        console.print(f"[bold]2. catch-up[/]: {r2}")
        for other in replicas[1:]:
            caught_up(other, master, timeout=300)
            post(other, "/api/v1/replication/pause")
        if args.pin:
            for server, cpu in ((master, 1), (replicas[0], 0)):
                assert server.proc is not None
                pin(server.proc.pid, cpu)
            pin(os.getpid(), 1)
        results["search_under_stream"] = r3 = search_under_stream(
            master, replicas[0], args.search_seconds, args.batch_files
        )
        r3["pinned"] = args.pin
        console.print(f"[bold]3. search on a replica, idle vs applying a stream[/]: {r3}")
    except _Skip:
        pass
    finally:
        for server in reversed(servers):
            server.stop()
    if not args.skip_bootstrap:
        results["bootstrap"] = r4 = bootstrap(root, args.bootstrap_scale)
        console.print(f"[bold]4. bootstrap[/]: {r4}")
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / f"replication-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    console.print(f"results: {out}")
    if not args.state_dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
