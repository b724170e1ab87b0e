"""Closed-loop load generator, latency statistics and process-memory probes for the benchmarks.

``run_closed_loop`` runs C concurrent workers that each take the next query of the mix (cycling)
and await its answer, until ``duration`` seconds have passed or ``max_requests`` have been sent
— both bounds always apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from query_mix import Query


@dataclass
class Outcome:
    ok: bool
    num_found: int | None = None
    error: str | None = None
    server_ms: float | None = None  # the server's own search time (QTime), when it reports it


@dataclass
class RunResult:
    elapsed_s: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    server_s: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    implausible: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def summary(self) -> dict[str, Any]:
        per = {k: latency_stats(v) for k, v in sorted(self.latencies.items())}
        every = [x for v in self.latencies.values() for x in v]
        return {
            "elapsed_s": round(self.elapsed_s, 3),
            "requests": self.completed,
            "throughput_rps": round(self.completed / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "errors": len(self.errors),
            "error_examples": self.errors[:5],
            "implausible": len(self.implausible),
            "implausible_examples": self.implausible[:5],
            "overall": latency_stats(every),
            "per_class": per,
            "server_time": {
                "overall": latency_stats([x for v in self.server_s.values() for x in v]),
                "per_class": {k: latency_stats(v) for k, v in sorted(self.server_s.items())},
            },
        }


def percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def latency_stats(values: Sequence[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "p50_ms": round(percentile(v, 50) * 1e3, 3),
        "p99_ms": round(percentile(v, 99) * 1e3, 3),
        "mean_ms": round(sum(v) / len(v) * 1e3, 3),
        "max_ms": round(v[-1] * 1e3, 3),
    }


Plausible = Callable[[Query, Outcome], str | None]


async def run_closed_loop(
    workers: Sequence[Callable[[Query], Awaitable[Outcome]]],
    mix: Sequence[Query],
    duration: float,
    max_requests: int,
    plausible: Plausible | None = None,
) -> RunResult:
    """One task per worker callable (e.g. one per connection); returns latencies per class."""
    res = RunResult()
    next_ix = 0
    t_start = time.perf_counter()
    deadline = t_start + duration

    async def worker(call: Callable[[Query], Awaitable[Outcome]]) -> None:
        nonlocal next_ix
        while time.perf_counter() < deadline and next_ix < max_requests:
            q = mix[next_ix % len(mix)]
            next_ix += 1
            t0 = time.perf_counter()
            try:
                out = await call(q)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, not raised
                out = Outcome(False, error=f"{type(exc).__name__}: {exc}")
            dt = time.perf_counter() - t0
            if not out.ok:
                res.errors.append(f"{q.klass} {q.query_string()[:300]}: {out.error}")
                continue
            res.latencies.setdefault(q.klass, []).append(dt)
            if out.server_ms is not None:
                res.server_s.setdefault(q.klass, []).append(out.server_ms / 1e3)
            if plausible is not None:
                why = plausible(q, out)
                if why:
                    res.implausible.append(f"{q.klass} {q.query_string()[:300]}: {why}")

    await asyncio.gather(*(worker(w) for w in workers))
    res.elapsed_s = time.perf_counter() - t_start
    return res


# ------------------------------------------------------------------------- memory probes
def _status_kb(pid: int, key: str) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (via /proc/<pid>/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        for task in pathlib.Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                todo.extend(int(x) for x in task.read_text().split())
    return out


def tree_memory(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM summed over the process tree, and proportional set size (Pss), in bytes."""
    rss = hwm = pss = 0
    pids = descendants(pid)
    for p in pids:
        rss += _status_kb(p, "VmRSS")
        hwm += _status_kb(p, "VmHWM")
        try:
            for line in pathlib.Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return {
        "processes": len(pids),
        "rss_bytes": rss * 1024,
        "hwm_bytes": hwm * 1024,
        "pss_bytes": pss * 1024,
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU so far of pid and its descendants (a server and its workers)."""
    ticks = 0
    for p in descendants(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class MemorySampler:
    """Samples a process tree's memory every ``interval`` s in the background; keeps the max."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.max_rss = 0
        self.max_pss = 0
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            m = tree_memory(self.pid)
            self.max_rss = max(self.max_rss, m["rss_bytes"])
            self.max_pss = max(self.max_pss, m["pss_bytes"])
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
