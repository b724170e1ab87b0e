"""A publisher killed mid-run and run again finishes the job: every dataset once, whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.publisher_helpers import ROOT_NAME, docs, make_samples
from tests.servers import IndexServer


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_killed_publisher_rerun_publishes_the_rest_without_duplicates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_samples(data, "CMIP6", 120, 31, "--files-per-version", "2")
    versions = {p for p in data.rglob("v*") if p.is_dir() and p.name[1:].isdigit()}
    n_files = len(list(data.rglob("*.nc")))
    server = IndexServer(tmp_path / "master").start()
    try:
        cmd = [
            sys.executable, "-m", "esgf_ha", "publish", "--index", server.url,
            "--token", server.token(), "--data-node", "kill.example.org",
            "--root", f"{ROOT_NAME}={data}", "--json", "--no-progress",
            "--batch-files", "2",  # one dataset version per request: a long upload to cut
            str(data),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        published = 0
        while time.monotonic() < deadline and proc.poll() is None:
            published = server.search(type="Dataset", limit=0)["response"]["numFound"]
            if published >= 5:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the publisher finished before it could be killed"
        workers = children(proc.pid)
        assert workers, "the publisher reads files in worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # not communicate(): its killed workers may hold the pipes open a moment longer; the
        # output is never read, so our ends are just closed rather than left to the GC
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        partial = server.search(type="Dataset", limit=0)["response"]["numFound"]
        assert 0 < partial < len(versions), partial

        # its worker processes do not outlive it
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived the publisher"
            time.sleep(0.1)

        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]

        datasets = docs(server, type="Dataset")
        assert len(datasets) == len(versions)
        assert max(Counter(d["id"] for d in datasets).values()) == 1
        files = docs(server, type="File")
        assert len(files) == n_files
        assert max(Counter(f["id"] for f in files).values()) == 1
        per_dataset = Counter(f["dataset_id"] for f in files)
        for ds in datasets:  # each dataset whole: no half-published one survived the kill
            assert per_dataset[ds["id"]] == ds["number_of_files"] == 2
    finally:
        server.stop()
