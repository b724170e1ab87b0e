"""Data node file-serving benchmark against nginx, same file, same disk, same run.

    .venv/bin/python bench/datanode_bench.py                 # 1 GiB file, 3 rounds, 8 and 32 streams
    .venv/bin/python bench/datanode_bench.py --size-mib 256 --rounds 1   # quick look
    git archive COMMIT src | tar -x -C /tmp/before           # an older node beside, same run:
    .venv/bin/python bench/datanode_bench.py --also ours-before=/tmp/before/src

Systems: `ours` (esgf-ha serve data, sendfile), `nginx` (Debian nginx serving the root with
`alias` + sendfile: the reference) and `ours+nginx` (the nginx mode: nginx proxies to our node,
which authorises and answers with X-Accel-Redirect). Transfers are made by curl (C, so the
client is not the bottleneck); the file is read once first so every system sees a warm page
cache. Range latency: 1 MiB slices at random offsets over one keep-alive connection (httpx)
per system, the systems taking turns request by request. Beside MB/s it reports the servers'
CPU seconds per GB and per range request, which move far less than MB/s when other users load
the machine. Prints a table and writes bench/out/datanode-<date>.json."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from esgf_ha.common.server import wait_until_ready
from esgf_ha.datanode.nginx import render_config
from esgf_ha.datanode.settings import DataSettings
from loadgen import tree_cpu_seconds  # bench/, the script's own folder

REL = "bench/file-1.bin"
ROOT = "esg_dataroot"
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"writing {size >> 20} MiB test file", total=size)
        with path.open("wb") as fh:
            written = 0
            while written < size:
                n = min(len(block), size - written)
                fh.write(block[:n])
                written += n
                progress.advance(task, n)


def start_node(
    state: Path, root: Path, listen: str, *extra: str, src: Path | None = None
) -> subprocess.Popen:
    state.mkdir(parents=True, exist_ok=True)
    (state / "data.endpoint.json").unlink(missing_ok=True)
    log = open(state / "server.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esgf_ha",
            "serve",
            "data",
            "--state-dir",
            str(state),
            "--listen",
            listen,
            "--root",
            f"{ROOT}={root}",
            "--log-level",
            "warning",
            *extra,
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(src)} if src else None,
    )
    wait_until_ready(state, "data", proc, timeout=60)
    return proc


def start_nginx(workdir: Path, conf_text: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / kind).mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(conf_text)
    proc = subprocess.Popen(
        ["nginx", "-p", str(workdir), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "stderr.log", "ab"),  # noqa: SIM115
    )
    return proc


def plain_nginx_conf(workdir: Path, root: Path, port: int) -> str:
    return f"""daemon off;
worker_processes auto;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
{"".join(f"    {k}_temp_path {workdir}/{k};{chr(10)}" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))}    server {{
        listen 127.0.0.1:{port};
        location /thredds/fileServer/{ROOT}/ {{ alias {root}/; }}
    }}
}}
"""


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.head(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def curl_streams(url: str, streams: int, size: int) -> float:
    """Aggregate MB/s of `streams` concurrent full downloads."""
    began = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", url]) for _ in range(streams)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - began
    if any(codes):
        raise RuntimeError(f"curl failed: {codes}")
    return streams * size / elapsed / 1e6


def range_latency(
    urls: dict[str, str], pids: dict[str, list[int]], size: int, n: int, seed: int = 1
) -> dict[str, dict[str, float]]:
    """p50/p99 of 1 MiB ranges per system, and the servers' CPU per request. The systems take
    turns request by request (the same offsets, one keep-alive connection each), so a load
    spike on the shared machine lands on all of them alike."""
    rng = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in urls}
    cpu: dict[str, float] = {}
    clients = {name: httpx.Client(timeout=30) for name in urls}
    try:
        for i in range(n + 10):
            if i == 10:  # the first requests warm up the connections
                cpu = {name: cpu_seconds(pids[name]) for name in urls}
            start = rng.randrange(0, size - (1 << 20))
            headers = {"Range": f"bytes={start}-{start + (1 << 20) - 1}"}
            for name, url in urls.items():
                t = time.perf_counter()
                r = clients[name].get(url, headers=headers)
                dt = time.perf_counter() - t
                if r.status_code != 206 or len(r.content) != 1 << 20:
                    raise RuntimeError(f"bad range answer {r.status_code} from {name}")
                times[name].append(dt * 1000)
    finally:
        for c in clients.values():
            c.close()
    out = {}
    for name, measured in times.items():
        ms = sorted(measured[10:])
        out[name] = {
            "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
            "range_cpu_ms": (cpu_seconds(pids[name]) - cpu[name]) / n * 1000,
        }
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes, their threads and children (nginx workers):
    unlike MB/s it hardly moves with the load other users put on the machine."""
    return sum(tree_cpu_seconds(pid) for pid in pids)


def result_table(
    results: dict[str, dict[str, float]], size_mib: int, rounds: int, streams: list[int]
) -> Table:
    """Best and median MB/s per stream count, each with its ratio to nginx in this run."""
    ref = results["nginx"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    table = Table(title=f"{size_mib} MiB file, best / median of {rounds}; load average {load}")
    columns = [("single_MBps", "1 stream"), ("single_median_MBps", "1 stream median")]
    for n in streams:
        columns += [(f"parallel{n}_MBps", f"{n} streams"), (f"parallel{n}_median_MBps", "median")]
    table.add_column("system")
    for _, title in columns:
        table.add_column(f"{title} MB/s (ratio)")
    cpu_keys = [f"parallel{n}_cpu_s_per_GB" for n in streams]
    table.add_column(f"server CPU s/GB ({', '.join(map(str, streams))} streams)")
    table.add_column("range p50 / p99 ms (ratio)")
    table.add_column("CPU ms per range")
    for name, r in results.items():
        cells = [f"{r[key]:.0f} ({r[key] / ref[key]:.2f})" for key, _ in columns]
        cpu = " / ".join(f"{r[k]:.3f}" for k in cpu_keys)
        p50, p99 = r["p50_ms"], r["p99_ms"]
        ranges = f"{p50:.2f} / {p99:.2f} ({p50 / ref['p50_ms']:.2f} / {p99 / ref['p99_ms']:.2f})"
        table.add_row(name, *cells, cpu, ranges, f"{r['range_cpu_ms']:.2f}")
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="test file size (default 1 GiB)")
    ap.add_argument("--rounds", type=int, default=3, help="best of N per measurement")
    ap.add_argument(
        "--streams",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[8, 32],
        help="parallel stream counts, comma-separated (default 8,32)",
    )
    ap.add_argument("--ranges", type=int, default=300, help="1 MiB range requests per system")
    ap.add_argument("--dir", type=Path, default=None, help="where the test file lives")
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also run the node from another source tree (`git archive COMMIT src`) as NAME,\n"
        "e.g. --also ours-before=/tmp/before/src; repeatable",
    )
    args = ap.parse_args()
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        console.print("nginx is not installed: apt-get install -y nginx-light")
        return 2
    os.environ["PATH"] += ":/usr/sbin"
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="dn-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    data_root = (args.dir or work) / "root"
    path = data_root / REL
    make_file(path, size)
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm cache

    procs: list[subprocess.Popen] = []
    try:
        nginx_port = free_port()
        procs.append(
            start_nginx(work / "nginx", plain_nginx_conf(work / "nginx", data_root, nginx_port))
        )
        nginx_url = f"http://127.0.0.1:{nginx_port}"

        procs.append(start_node(work / "ours", data_root, "127.0.0.1:0"))
        ours_url = json.loads((work / "ours" / "data.endpoint.json").read_text())["url"]

        accel_port, front_port = free_port(), free_port()
        settings = DataSettings(
            listen=f"127.0.0.1:{accel_port}",
            roots={ROOT: data_root},
            accel_prefix="/_esgf_internal",
        )
        front = work / "front"
        conf = render_config(
            settings,
            f"127.0.0.1:{front_port}",
            pid_file=f"{front}/nginx.pid",
            error_log=f"{front}/error.log",
            temp_dir=str(front),
            daemon=False,
        )
        procs.append(
            start_node(
                work / "accel",
                data_root,
                f"127.0.0.1:{accel_port}",
                "--accel-prefix",
                "/_esgf_internal",
            )
        )
        procs.append(start_nginx(front, conf))
        front_url = f"http://127.0.0.1:{front_port}"

        systems = {"nginx": nginx_url, "ours": ours_url, "ours+nginx": front_url}
        pids = {
            "nginx": [procs[0].pid],
            "ours": [procs[1].pid],
            "ours+nginx": [procs[2].pid, procs[3].pid],
        }
        for also in args.also:
            name, _, src = also.partition("=")
            procs.append(start_node(work / name, data_root, "127.0.0.1:0", src=Path(src)))
            systems[name] = json.loads((work / name / "data.endpoint.json").read_text())["url"]
            pids[name] = [procs[-1].pid]
        for base in systems.values():
            wait_http(f"{base}/thredds/fileServer/{ROOT}/{REL}")
        results: dict[str, dict[str, float]] = {}
        urls = {name: f"{base}/thredds/fileServer/{ROOT}/{REL}" for name, base in systems.items()}
        single: dict[str, list[float]] = {name: [] for name in systems}
        multi: dict[int, dict[str, list[float]]] = {
            n: {name: [] for name in systems} for n in args.streams
        }
        cpu = {n: {name: 0.0 for name in systems} for n in args.streams}
        steps = len(systems) * (1 + len(args.streams)) * args.rounds + 1
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("measuring", total=steps)
            # systems take turns within each round, so a noisy neighbour hurts them alike
            for _ in range(args.rounds):
                for name, url in urls.items():
                    single[name].append(curl_streams(url, 1, size))
                    progress.advance(task)
                for n in args.streams:
                    for name, url in urls.items():
                        before = cpu_seconds(pids[name])
                        multi[n][name].append(curl_streams(url, n, size))
                        cpu[n][name] += cpu_seconds(pids[name]) - before
                        progress.advance(task)
            ranges = range_latency(urls, pids, size, args.ranges)
            progress.advance(task)
        for name in urls:
            results[name] = {
                "single_MBps": max(single[name]),
                "single_median_MBps": statistics.median(single[name]),
                **ranges[name],
            }
            for n in args.streams:
                results[name][f"parallel{n}_MBps"] = max(multi[n][name])
                results[name][f"parallel{n}_median_MBps"] = statistics.median(multi[n][name])
                gb = n * size * args.rounds / 1e9
                results[name][f"parallel{n}_cpu_s_per_GB"] = cpu[n][name] / gb
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    Console(width=220).print(result_table(results, args.size_mib, args.rounds, args.streams))
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"datanode-{stamp}.json").write_text(
        json.dumps(
            {
                "size_mib": args.size_mib,
                "rounds": args.rounds,
                "results": results,
                "load_average": os.getloadavg(),
                "runs_MBps": {"single": single, **{f"parallel{n}": multi[n] for n in multi}},
            },
            indent=2,
        )
    )
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
