"""Data replication throughput: `esgf-ha replicate` against `curl --parallel` and esgpull (its
client venv, `make clients-setup`) fetching the same files from the same local data node, over
HTTPS (esgpull only speaks HTTPS), in one run.

    .venv/bin/python bench/replicate_bench.py                     # 200 files, 2 GB
    .venv/bin/python bench/replicate_bench.py --files 50 --size-mb 4
    .venv/bin/python bench/replicate_bench.py --rounds 3              # best and median of 3

Everything runs on 127.0.0.1: a master index (`esgf-ha serve index`), one data node
(`esgf-ha serve data`) serving the generated files, a second data node for the destination.
Our figure includes discovery, SHA256 verification of every byte and publication of the replica
records; curl only writes the bytes. Results go to bench/out/replicate-<date>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import httpx
import orjson

if TYPE_CHECKING:
    from esgf_ha.records.build import FileInfo

BENCH_DIR = pathlib.Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
ROOT = "esg_dataroot"


def start(
    args: list[str], state: pathlib.Path, name: str, verify: Any = True
) -> tuple[subprocess.Popen[bytes], str]:
    state.mkdir(parents=True, exist_ok=True)
    endpoint = state / f"{name}.endpoint.json"
    endpoint.unlink(missing_ok=True)
    log = open(state / "server.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "esgf_ha", *args], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if endpoint.exists():
            info = orjson.loads(endpoint.read_bytes())
            if info.get("pid") == proc.pid:
                try:
                    ca = info.get("ca")
                    check = ssl.create_default_context(cafile=ca) if ca else verify
                    if (
                        httpx.get(info["url"] + "/readyz", timeout=2, verify=check).status_code
                        == 200
                    ):
                        return proc, str(info["url"])
                except httpx.HTTPError:
                    pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"{name} did not start: {(state / 'server.log').read_text()[-2000:]}")


def make_files(root: pathlib.Path, n: int, size: int) -> tuple[dict[str, object], list[FileInfo]]:
    from esgf_ha.records.build import FileInfo
    from esgf_ha.records.drs import CMIP6

    facets: dict[str, object] = {
        "mip_era": "CMIP6", "activity_drs": "CMIP", "activity_id": "CMIP",
        "institution_id": "BENCH", "source_id": "SYN", "experiment_id": "historical",
        "member_id": "r1i1p1f1", "table_id": "Amon", "variable_id": "tas", "grid_label": "gn",
    }  # fmt: skip
    directory = root / CMIP6.directory(facets, "20250101")
    directory.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    infos = []
    for i in range(n):
        name = f"tas_Amon_SYN_historical_r1i1p1f1_gn_{i:05d}.nc"
        h = hashlib.sha256()
        with open(directory / name, "wb") as f:
            for j in range(size >> 20):
                # every MiB differs, so no file and no block is a copy of another
                chunk = i.to_bytes(4, "big") + j.to_bytes(4, "big") + block[8:]
                f.write(chunk)
                h.update(chunk)
        infos.append(FileInfo(name, size, h.hexdigest()))
    return facets, infos


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--size-mb", type=int, default=10)
    ap.add_argument("--parallel", type=int, default=8, help="concurrent transfers for everyone")
    ap.add_argument("--workdir", type=pathlib.Path, default=None)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved runs of every system")
    ap.add_argument("--esgpull-rounds", type=int, default=99,
                    help="run esgpull in the first N rounds only (it is the slowest)")  # fmt: skip
    args = ap.parse_args()

    from esgf_ha.common.auth import issue_token
    from esgf_ha.records.build import build_records
    from esgf_ha.records.drs import CMIP6

    work = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="esgf-ha-repl-bench-"))
    src, dst, curl_dst = work / "src", work / "dst", work / "curl"
    for p in (dst, curl_dst):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    size = args.size_mb << 20
    print(f"[a] writing {args.files} files of {args.size_mb} MiB under {src} ...", flush=True)
    shutil.rmtree(src, ignore_errors=True)
    facets, infos = make_files(src, args.files, size)
    total = args.files * size
    procs = []
    try:
        master, master_url = start(["serve", "index", "--state-dir", str(work / "master"),
                                    "--listen", "127.0.0.1:0"], work / "master", "index")  # fmt: skip
        procs.append(master)
        node, node_url = start(["serve", "data", "--state-dir", str(work / "node"), "--listen",
                                "127.0.0.1:0", "--root", f"{ROOT}={src}", "--tls"],
                               work / "node", "data")  # fmt: skip
        ca = work / "node" / "tls" / "ca.pem"
        procs.append(node)
        dest, dest_url = start(["serve", "data", "--state-dir", str(work / "dest"), "--listen",
                                "127.0.0.1:0", "--root", f"{ROOT}={dst}"], work / "dest", "data")  # fmt: skip
        procs.append(dest)
        token = issue_token(work / "master", ["esgf:publish"], subject="bench")
        dataset, files = build_records(
            CMIP6, facets, "20250101", infos, data_node=node_url.split("://")[1],
            index_node="bench", root_name=ROOT, url_base=node_url,
        )  # fmt: skip
        r = httpx.post(master_url + "/api/v1/publish", headers={"Authorization": f"Bearer {token}"},
                       content=orjson.dumps({"datasets": [{"dataset": dataset, "files": files}]}),
                       timeout=120)  # fmt: skip
        r.raise_for_status()
        urls = [str(f["url"][0]).split("|")[0] for f in files]  # type: ignore[index]
        esgpull_py = REPO / ".venv-clients" / "esgpull" / "bin" / "python"
        times: dict[str, list[float]] = {"curl": [], "esgpull": [], "ours": []}
        phases: list[dict[str, float]] = []

        config = work / "curl.cfg"
        config.write_text("".join(f'url = "{u}"\noutput = "{curl_dst / u.rsplit("/", 1)[1]}"\n'
                                  for u in urls))  # fmt: skip
        auth = {"Authorization": f"Bearer {token}"}
        for n in range(1, args.rounds + 1):
            # systems take turns; the order flips each round so neither always goes first
            order = ["curl", "esgpull", "ours"] if n % 2 else ["ours", "curl", "esgpull"]
            for system in order:
                if system == "curl":
                    print(f"[{n}] curl --parallel --parallel-max {args.parallel} ...", flush=True)
                    shutil.rmtree(curl_dst)
                    curl_dst.mkdir()
                    began = time.monotonic()
                    subprocess.run(["curl", "--silent", "--no-progress-meter", "--fail", "--parallel",
                                    "--parallel-max", str(args.parallel), "--cacert", str(ca),
                                    "--config", str(config)], check=True)  # fmt: skip
                    times["curl"].append(time.monotonic() - began)
                    assert sum(p.stat().st_size for p in curl_dst.iterdir()) == total
                elif system == "esgpull":
                    if not esgpull_py.exists() or n > args.esgpull_rounds:
                        continue
                    print(f"[{n}] esgpull (its Processor: parallel downloads, checksums) ...",
                          flush=True)  # fmt: skip
                    shutil.rmtree(work / "esgpull", ignore_errors=True)
                    began = time.monotonic()
                    run = subprocess.run(
                        [str(esgpull_py), str(REPO / "tests/clients/drive_esgpull_download.py"),
                         master_url, "--workdir", str(work / "esgpull"),
                         "--selection", '{"source_id": "SYN"}'],
                        capture_output=True, text=True,
                        env={**os.environ, "SSL_CERT_FILE": str(ca)},
                    )  # fmt: skip
                    seconds = time.monotonic() - began
                    out = run.stdout.strip()
                    report = json.loads(out.splitlines()[-1]) if out else {}
                    ok = [f for f in report.get("files", []) if f.get("status") == "ok"]
                    if len(ok) == args.files:
                        times["esgpull"].append(seconds)
                    else:
                        print(f"    esgpull fetched {len(ok)} of {args.files} files: "
                              f"{run.stderr[-1000:]}", flush=True)  # fmt: skip
                else:
                    print(f"[{n}] esgf-ha replicate --concurrency {args.parallel} ...", flush=True)
                    shutil.rmtree(dst)
                    dst.mkdir()
                    shutil.rmtree(work / "repl", ignore_errors=True)
                    began = time.monotonic()
                    run = subprocess.run(
                        [sys.executable, "-m", "esgf_ha", "replicate", "--state-dir",
                         str(work / "repl"), "--index", master_url, "--token", token,
                         "--site", "bench", "--root", f"{ROOT}={dst}", "--data-node", dest_url,
                         "--query", "source_id=SYN", "--concurrency", str(args.parallel),
                         "--per-host", str(args.parallel), "--json", "--ca-file", str(ca)],
                        capture_output=True, text=True,
                    )  # fmt: skip
                    times["ours"].append(time.monotonic() - began)
                    summary = orjson.loads(run.stdout.strip().splitlines()[-1])
                    if run.returncode != 0 or summary["files_done"] != args.files:
                        raise SystemExit(
                            f"replicate failed: {run.stdout[-2000:]} {run.stderr[-2000:]}"
                        )
                    phases.append(summary["phases"])
                    # withdraw the replica so the next round (and esgpull) sees only the original
                    found = httpx.get(master_url + "/esg-search/search", params={
                        "type": "Dataset", "replica": "true", "fields": "id",
                        "format": "application/solr+json", "limit": 100}, timeout=60).json()  # fmt: skip
                    ids = [d["id"] for d in found["response"]["docs"]]
                    httpx.post(master_url + "/api/v1/delete", headers=auth,
                               content=orjson.dumps({"ids": ids}), timeout=120).raise_for_status()  # fmt: skip
            print(
                f"    round {n}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if len(v) == n),
                flush=True,
            )

    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    mb = total / 1e6

    def figures(name: str) -> dict[str, float | list[float]] | None:
        t = times[name]
        if not t:
            return None
        return {"best_seconds": round(min(t), 3), "median_seconds": round(statistics.median(t), 3),
                "best_MB_per_s": round(mb / min(t), 1),
                "median_MB_per_s": round(mb / statistics.median(t), 1),
                "runs": [round(x, 3) for x in t]}  # fmt: skip

    def ratios(other: str) -> dict[str, float | list[float]] | None:
        # per round, each system against the other measured in the same round
        pairs = [o / u for o, u in zip(times[other], times["ours"], strict=False)]
        if not pairs:
            return None
        return {"best": round(max(pairs), 3), "median": round(statistics.median(pairs), 3),
                "runs": [round(x, 3) for x in pairs]}  # fmt: skip

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "files": args.files, "bytes": total, "parallel": args.parallel, "rounds": args.rounds,
        "curl": figures("curl"), "ours": figures("ours"), "esgpull": figures("esgpull"),
        "ours_phases": phases,
        "ours_over_curl": ratios("curl"), "ours_over_esgpull": ratios("esgpull"),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(),
    }  # fmt: skip
    print(f"\n{'':10s} {'best s':>8s} {'median s':>9s} {'best MB/s':>10s} {'median MB/s':>12s}")
    for name in times:
        f = figures(name)
        if f:
            print(f"{name:10s} {f['best_seconds']:8.2f} {f['median_seconds']:9.2f} "
                  f"{f['best_MB_per_s']:10.1f} {f['median_MB_per_s']:12.1f}")  # fmt: skip
    print(f"ours by step (last round): {phases[-1]}")
    for other, target in (("curl", 0.8), ("esgpull", 1.5)):
        ratio = ratios(other)
        if ratio:
            print(f"throughput ours/{other} per round: best {ratio['best']:.2f}, median "
                  f"{ratio['median']:.2f} {ratio['runs']} (target >= {target})")  # fmt: skip
    OUT_DIR.mkdir(exist_ok=True)
    saved = OUT_DIR / f"replicate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"results: {saved}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
