"""Data replication throughput: `esgf-ha replicate` against `curl --parallel` and esgpull (its
client venv, `make clients-setup`) fetching the same files from the same local data node, over
HTTPS (esgpull only speaks HTTPS), in one run.

    .venv/bin/python bench/replicate_bench.py                     # 200 files, 2 GB
    .venv/bin/python bench/replicate_bench.py --files 50 --size-mb 4

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
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import orjson

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


def make_files(root: pathlib.Path, n: int, size: int) -> tuple[dict[str, str], list[Any]]:
    from esgf_ha.records.build import FileInfo
    from esgf_ha.records.drs import CMIP6

    facets = {"mip_era": "CMIP6", "activity_drs": "CMIP", "activity_id": "CMIP",
              "institution_id": "BENCH", "source_id": "SYN", "experiment_id": "historical",
              "member_id": "r1i1p1f1", "table_id": "Amon", "variable_id": "tas",
              "grid_label": "gn"}  # fmt: skip
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

        print(f"[b] curl --parallel --parallel-max {args.parallel} ...", flush=True)
        config = work / "curl.cfg"
        config.write_text("".join(f'url = "{u}"\noutput = "{curl_dst / u.rsplit("/", 1)[1]}"\n'
                                  for u in urls))  # fmt: skip
        began = time.monotonic()
        subprocess.run(["curl", "--silent", "--no-progress-meter", "--fail", "--parallel", "--parallel-max",
                        str(args.parallel), "--cacert", str(ca), "--config", str(config)], check=True)  # fmt: skip
        curl_s = time.monotonic() - began
        assert sum(p.stat().st_size for p in curl_dst.iterdir()) == total

        esgpull_s = None
        esgpull_py = REPO / ".venv-clients" / "esgpull" / "bin" / "python"
        if esgpull_py.exists():
            print("[c] esgpull (its Processor: parallel downloads, checksum check) ...", flush=True)
            began = time.monotonic()
            run = subprocess.run(
                [str(esgpull_py), str(REPO / "tests/clients/drive_esgpull_download.py"),
                 master_url, "--workdir", str(work / "esgpull"),
                 "--selection", '{"source_id": "SYN"}'],
                capture_output=True, text=True, env={**os.environ, "SSL_CERT_FILE": str(ca)},
            )  # fmt: skip
            esgpull_s = time.monotonic() - began
            report = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
            ok = [f for f in report.get("files", []) if f.get("status") == "ok"]
            if len(ok) != args.files:
                print(f"    esgpull fetched {len(ok)} of {args.files} files: "
                      f"{run.stderr[-1000:]}", flush=True)  # fmt: skip
                esgpull_s = None

        print(f"[d] esgf-ha replicate --concurrency {args.parallel} ...", flush=True)
        began = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "esgf_ha", "replicate", "--state-dir", str(work / "repl"),
             "--index", master_url, "--token", token, "--site", "bench",
             "--root", f"{ROOT}={dst}", "--data-node", dest_url, "--query", "source_id=SYN",
             "--concurrency", str(args.parallel), "--per-host", str(args.parallel), "--json",
             "--ca-file", str(ca)],
            capture_output=True, text=True,
        )  # fmt: skip
        ours_s = time.monotonic() - began
        summary = orjson.loads(run.stdout.strip().splitlines()[-1])
        if run.returncode != 0 or summary["files_done"] != args.files:
            raise SystemExit(f"replicate failed: {run.stdout[-2000:]} {run.stderr[-2000:]}")

    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    mb = total / 1e6
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "files": args.files, "bytes": total, "parallel": args.parallel,
        "curl": {"seconds": round(curl_s, 3), "MB_per_s": round(mb / curl_s, 1)},
        "ours": {"seconds": round(ours_s, 3), "MB_per_s": round(mb / ours_s, 1),
                 "inner_seconds": summary["seconds"], "phases": summary["phases"]},
        "ours_over_curl": round(curl_s / ours_s, 3),
        "esgpull": None if esgpull_s is None else {
            "seconds": round(esgpull_s, 3), "MB_per_s": round(mb / esgpull_s, 1)},
        "ours_over_esgpull": None if esgpull_s is None else round(esgpull_s / ours_s, 3),
        "cpus": os.cpu_count(),
    }  # fmt: skip
    print(f"\n{'':12s} {'seconds':>10s} {'MB/s':>10s}")
    print(f"{'curl':12s} {curl_s:10.2f} {mb / curl_s:10.1f}")
    print(f"{'ours':12s} {ours_s:10.2f} {mb / ours_s:10.1f}")
    if esgpull_s is not None:
        print(f"{'esgpull':12s} {esgpull_s:10.2f} {mb / esgpull_s:10.1f}")
    print(f"ours by step: {summary['phases']}")
    print(f"throughput ours/curl: {result['ours_over_curl']:.2f} (target >= 0.8)")
    if esgpull_s is not None:
        print(f"throughput ours/esgpull: {result['ours_over_esgpull']:.2f} (target >= 1.5)")
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / f"replicate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"results: {out}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
