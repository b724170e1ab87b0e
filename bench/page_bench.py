"""The search page and the STAC API at a benchmark tier: time to first results in a browser.

    PYTHONPATH=src .venv/bin/python bench/page_bench.py --scale 100k [--loads 15]

Bulk-loads the synthetic index (as search_bench.py does), starts `esgf-ha serve index` on it,
then (a) opens the search page `--loads` times in headless chromium (a fresh tab each time, the
browser cache kept as a returning user's) and reads the page's `first-results` performance mark
(milliseconds from the start of navigation to the first results on screen), for the default
view and for a CMIP6 view with two facets chosen; (b) times STAC searches over HTTP (landing,
collections, a page of items, a CQL2 filter). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from ours import ServerProcess, run_load_subprocess  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
VIEWS = {"default": "/", "cmip6_two_facets": "/?project=CMIP6&frequency=mon&table_id=Amon"}
STAC = {
    "landing": ("GET", "/stac", None),
    "collections": ("GET", "/stac/collections", None),
    "items_page": ("GET", "/stac/search?collections=cmip6&limit=10", None),
    "cql2_filter": ("POST", "/stac/search", {"collections": ["cmip6"], "limit": 10,
                    "filter": "frequency = 'mon' AND variable_id IN ('tas','pr') AND latest = true"}),
}  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser(profile: pathlib.Path) -> Any:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))


def first_results(driver: Any, url: str, timeout: float = 30.0) -> float:
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mark = driver.execute_script(
            "const m = performance.getEntriesByName('first-results');"
            "return m.length ? m[0].startTime : null;"
        )
        if mark is not None:
            return float(mark)
        time.sleep(0.01)
    raise TimeoutError(f"no results on {url}")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "max_ms": round(ordered[-1], 1),
        "min_ms": round(ordered[0], 1),
        "n": len(ordered),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="100k")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--loads", type=int, default=15)
    p.add_argument("--state-dir", help="keep the loaded index here, and reuse it when present")
    args = p.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="esgf-ha-page-bench-"))
    state = pathlib.Path(args.state_dir) if args.state_dir else work / "state"
    report: dict[str, Any] = {"scale": args.scale}
    try:
        if not (state / "index.sqlite3").exists():
            report["load"] = run_load_subprocess(args.scale, args.seed, state, False, 1800)
        server = ServerProcess(state, _free_port(), work / "server.log")
        server.start_and_wait(600)
        try:
            driver = browser(work / "profile")
            try:
                first_results(driver, server.base_url + "/")  # warm the browser's cache
                report["page"] = {
                    name: summary([first_results(driver, server.base_url + path)
                                   for _ in range(args.loads)])
                    for name, path in VIEWS.items()
                }  # fmt: skip
            finally:
                driver.quit()
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                stac: dict[str, Any] = {}
                for name, (method, path, body) in STAC.items():
                    times = []
                    for _ in range(args.loads):
                        began = time.perf_counter()
                        r = client.request(method, path, json=body)
                        times.append((time.perf_counter() - began) * 1000)
                        r.raise_for_status()
                    stac[name] = summary(times)
                    if "numberMatched" in r.json():
                        stac[name]["matched"] = r.json()["numberMatched"]
                report["stac"] = stac
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
