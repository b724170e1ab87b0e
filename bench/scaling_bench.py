"""Search throughput with 1 and with 2 cores, driven by wrk (C) instead of a Python client.

`search_bench.py` drives the server from one Python process; on a 2-core machine that client
needs most of a core itself, so it caps what a server with two cores can show. Here wrk sends
the same query mix (same tier, same seed, every class in its share), cycling through the
requests over keep-alive connections, and costs a few percent of a core. The server is
reused from a store loaded by `search_bench.py --keep-state`:

    .venv/bin/python bench/search_bench.py --scale 100k --skip-postgres \
        --state-dir /tmp/s100k --keep-state
    .venv/bin/python bench/scaling_bench.py --scale 100k --state-dir /tmp/s100k

Configurations, in turns per round: one worker pinned to one core (the reference), two
workers pinned to that same core, two workers on both cores. wrk is not pinned. Prints
searches/s, wrk's latency percentiles, the ratio of each configuration to the reference, the
cores the server kept busy and its CPU time per search, and writes
bench/out/scaling-<scale>-<date>.json.

Each round also measures what the machine itself gives from a second core: a fixed
interpreter loop timed alone on one core, then two copies at once on both. On a virtual
machine the two cores may share a physical core or be slowed by other tenants, so a server
that keeps both cores busy can still not reach 2x; the machine's own figure, measured in the
same round, says how much a second core was worth then.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import orjson

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from loadgen import tree_cpu_seconds  # noqa: E402
from ours import ServerProcess  # noqa: E402
from query_mix import build_mix  # noqa: E402
from search_bench import free_port  # noqa: E402
from synth import DEFAULT_SEED, SyntheticIndex  # noqa: E402

OUT_DIR = pathlib.Path(__file__).resolve().parent / "out"

# wrk runs this per connection: each request takes the next path of the mix
LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end
"""

# the machine reference: pure interpreter work, no memory traffic to speak of
SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(15_000_000): x += i * i\nprint(time.perf_counter() - t)"

CONFIGS = (
    ("1 worker, 1 core", 1, "1"),
    ("2 workers, 1 core", 2, "1"),
    ("2 workers, 2 cores", 2, "0,1"),
)


def parse_wrk(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["searches_per_s"] = float(m.group(1))
    for pct, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        out[f"p{pct}_ms"] = round(float(value) * scale, 2)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: .*", text)
    out["socket_errors"] = 1.0 if m else 0.0
    return out


def run_config(
    args: argparse.Namespace, name: str, workers: int, cpus: str, script: pathlib.Path
) -> dict[str, float]:
    server = ServerProcess(
        pathlib.Path(args.state_dir),
        free_port(),
        OUT_DIR / f"server-scaling-{workers}w-{cpus}.log",
        workers=workers,
        cpus=cpus,
    )
    try:
        server.start_and_wait(args.ready_timeout)
        wrk = ["wrk", "-t1", f"-c{args.connections}", "--latency", "-s", str(script)]
        # warm-up: every worker fills its caches the same way before the timed run
        subprocess.run([*wrk, "-d5s", server.base_url], capture_output=True, check=True)
        cpu0, t0 = tree_cpu_seconds(server.pid), time.perf_counter()
        done = subprocess.run(
            [*wrk, f"-d{args.duration}s", server.base_url],
            capture_output=True,
            text=True,
            check=True,
        )
        cpu, wall = tree_cpu_seconds(server.pid) - cpu0, time.perf_counter() - t0
    finally:
        server.stop()
    result = parse_wrk(done.stdout)
    result["server_cores_busy"] = round(cpu / wall, 2)
    searches = result.get("searches_per_s", 0.0) * args.duration
    result["server_cpu_ms_per_search"] = round(cpu * 1000 / searches, 3) if searches else 0.0
    print(f"    {name}: {result}", flush=True)
    return result


def machine_reference() -> dict[str, float]:
    """How much faster two cores run a fixed loop than one, right now (2.0: fully)."""

    def spin(cpus: list[str]) -> list[float]:
        procs = [
            subprocess.Popen(
                ["taskset", "-c", cpu, sys.executable, "-c", SPIN],
                stdout=subprocess.PIPE,
                text=True,
            )
            for cpu in cpus
        ]
        return [float(p.communicate()[0]) for p in procs]

    solo = spin(["1"])[0]
    pair = spin(["0", "1"])
    out = {"solo_s": round(solo, 3), "pair_s": round(max(pair), 3)}
    out["ratio"] = round(2 * solo / max(pair), 2)
    print(f"    machine, a fixed loop: {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", default="100k")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--state-dir", required=True, help="a store loaded by search_bench.py")
    p.add_argument("--mix-size", type=int, default=5000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--duration", type=int, default=30, help="seconds per configuration")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ready-timeout", type=float, default=600)
    args = p.parse_args(argv)
    if not (pathlib.Path(args.state_dir) / "index.sqlite3").exists():
        p.error(f"no store in {args.state_dir}; load one with search_bench.py --keep-state")
    if shutil.which("wrk") is None:  # Debian's wrk, as the other benchmarks install theirs
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    OUT_DIR.mkdir(exist_ok=True)
    mix = build_mix(SyntheticIndex(args.scale, args.seed), args.mix_size, seed=args.seed + 1)
    with tempfile.TemporaryDirectory(prefix="esgf-ha-scaling-") as tmp:
        paths = pathlib.Path(tmp) / "paths.txt"
        paths.write_text("".join(f"/esg-search/search?{q.query_string()}\n" for q in mix))
        script = pathlib.Path(tmp) / "mix.lua"
        script.write_text(LUA % paths)
        rounds: list[dict[str, dict[str, float]]] = []
        for r in range(args.rounds):
            print(f"[{r + 1}] load average {os.getloadavg()[0]:.2f}", flush=True)
            before = machine_reference()
            results = {name: run_config(args, name, w, c, script) for name, w, c in CONFIGS}
            after = machine_reference()
            results["machine"] = {
                "ratio_before": before["ratio"],
                "ratio_after": after["ratio"],
                "ratio": round((before["ratio"] + after["ratio"]) / 2, 2),
            }
            rounds.append(results)
    ref = CONFIGS[0][0]
    print(f"\n{'configuration':<22} {'best /s':>9} {'ratio':>7}   per round")
    summary: dict[str, dict[str, float]] = {}
    best_ref = max(rnd[ref]["searches_per_s"] for rnd in rounds)
    for name, _, _ in CONFIGS:
        rates = [rnd[name]["searches_per_s"] for rnd in rounds]
        per_round = [
            round(rnd[name]["searches_per_s"] / rnd[ref]["searches_per_s"], 2) for rnd in rounds
        ]
        summary[name] = {"best": max(rates), "ratio_best": round(max(rates) / best_ref, 2)}
        print(f"{name:<22} {max(rates):>9.1f} {max(rates) / best_ref:>6.2f}×   {per_round}")
    machine = [rnd["machine"]["ratio"] for rnd in rounds]
    print(f"{'machine, a fixed loop':<22} {'':>9} {'':>7}   {machine}  (2 cores / 1 core)")
    for name, _, _ in CONFIGS:
        busy = [rnd[name]["server_cores_busy"] for rnd in rounds]
        ms = [rnd[name]["server_cpu_ms_per_search"] for rnd in rounds]
        print(f"{name:<22} cores busy {busy}, server CPU ms per search {ms}")
    summary["machine"] = {f"round_{i + 1}": r for i, r in enumerate(machine)}
    out = OUT_DIR / f"scaling-{args.scale}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    report = {"config": vars(args), "rounds": rounds, "summary": summary, "cpus": os.cpu_count()}
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
