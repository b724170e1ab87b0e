"""Our side of the search benchmark: bulk load, server process, HTTP workers.

``python bench/ours.py load --scale 100k --state-dir DIR`` bulk-loads the synthetic index with
``esgf_ha.index.service.IndexService`` in a fresh process (so its peak memory is its own) and
prints one JSON line with the timings.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from loadgen import Outcome
from query_mix import Query

BENCH_DIR = pathlib.Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = REPO / ".venv" / "bin"
SEARCH_PATH = "/esg-search/search"


def dir_size(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ bulk load
def load_main(scale: str, seed: int, state_dir: pathlib.Path, dev_stub: bool) -> dict[str, Any]:
    from synth import SyntheticIndex

    service: Any
    if dev_stub:
        from _devstub_index import DevStubIndexService

        service = DevStubIndexService
    else:
        from esgf_ha.index.service import IndexService

        service = IndexService

    t0 = time.perf_counter()
    idx = SyntheticIndex(scale, seed)
    t1 = time.perf_counter()
    svc = service.open(state_dir)
    t2 = time.perf_counter()
    svc.bulk_load(idx.iter_datasets(), idx.iter_files())
    t3 = time.perf_counter()
    svc.close()
    t4 = time.perf_counter()
    return {
        "plan_s": round(t1 - t0, 3),
        "open_s": round(t2 - t1, 3),
        "bulk_load_s": round(t3 - t2, 3),  # includes building the record dicts
        "close_s": round(t4 - t3, 3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "state_dir_bytes": dir_size(state_dir),
    }


def run_load_subprocess(
    scale: str, seed: int, state_dir: pathlib.Path, dev_stub: bool, timeout: float
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(BENCH_DIR / "ours.py"),
        "load",
        "--scale",
        scale,
        "--seed",
        str(seed),
        "--state-dir",
        str(state_dir),
    ]
    if dev_stub:
        cmd.append("--dev-stub")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bulk load failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    out = orjson.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = round(wall, 3)
    return dict(out)


# --------------------------------------------------------------------------- server process
@dataclass
class ServerProcess:
    state_dir: pathlib.Path
    port: int
    log_path: pathlib.Path
    dev_stub: bool = False
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 1
    # CPUs the server (every worker) may run on, as taskset takes them ("0", "0,1"); None: any
    cpus: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        listen = f"127.0.0.1:{self.port}"
        if self.dev_stub:
            return [
                sys.executable,
                str(BENCH_DIR / "_devstub_index.py"),
                "serve",
                "--state-dir",
                str(self.state_dir),
                "--listen",
                listen,
            ]
        pinned = ["taskset", "-c", self.cpus] if self.cpus else []
        return [
            *pinned,
            str(VENV_BIN / "esgf-ha"),
            "serve",
            "index",
            "--role",
            "master",
            "--state-dir",
            str(self.state_dir),
            "--listen",
            listen,
            "--workers",
            str(self.workers),
        ]

    def start_and_wait(self, timeout: float) -> float:
        """Start the server; return seconds until ``GET /readyz`` answered 200."""
        log = self.log_path.open("wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        log.close()
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"server exited rc={self.proc.returncode}:\n{tail}")
                try:
                    if client.get(self.base_url + "/readyz").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout:.0f}s (log: {self.log_path})")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)  # our own session only
            self.proc.wait(timeout=15)


# ------------------------------------------------------------------------------ HTTP side
@dataclass
class HttpAnswer:
    num_found: int
    ids: list[str]
    facets: dict[str, dict[str, int]]


def parse_answer(body: bytes) -> HttpAnswer:
    doc = orjson.loads(body)
    resp = doc["response"]
    flat = doc.get("facet_counts", {}).get("facet_fields", {})
    facets = {k: dict(zip(v[::2], v[1::2], strict=True)) for k, v in flat.items()}
    return HttpAnswer(int(resp["numFound"]), [d.get("id") for d in resp.get("docs", [])], facets)


def http_worker(client: httpx.AsyncClient) -> Any:
    async def call(q: Query) -> Outcome:
        r = await client.get(SEARCH_PATH, params=list(q.params))
        if r.status_code != 200:
            return Outcome(False, error=f"HTTP {r.status_code}: {r.text[:200]}")
        body = orjson.loads(r.content)
        timing = r.headers.get("server-timing", "")  # "search;dur=<ms>", finer than QTime
        server_ms = float(timing.split("dur=", 1)[1]) if "dur=" in timing else None
        return Outcome(True, num_found=int(body["response"]["numFound"]), server_ms=server_ms)

    return call


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["load"])
    ap.add_argument("--scale", default="100k")
    ap.add_argument("--seed", type=int, default=20250101)
    ap.add_argument("--state-dir", type=pathlib.Path, required=True)
    ap.add_argument("--dev-stub", action="store_true")
    a = ap.parse_args()
    sys.stdout.write(
        orjson.dumps(load_main(a.scale, a.seed, a.state_dir, a.dev_stub)).decode() + "\n"
    )


if __name__ == "__main__":
    main()
