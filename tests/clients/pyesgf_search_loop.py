"""Search with the real esgf-pyclient again and again, until a stop file appears.

Run with the pyesgf client venv, inside a network namespace whose resolver is the one under test:

    .venv-clients/pyesgf/bin/python tests/clients/pyesgf_search_loop.py \
        http://search.esgf.test:8080/esg-search STOPFILE --timeout 30

Each search is a new SearchConnection, so each one resolves the name again (as a new user
would). Prints one JSON line per search: {"t": start (epoch s), "s": seconds, "hits": N} or
{"t": …, "s": …, "error": "…"}. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from urllib.parse import urlsplit

os.environ.setdefault("ESGF_PYCLIENT_NO_FACETS_STAR_WARNING", "1")

from pyesgf.search import SearchConnection  # noqa: E402


def _addresses(url: str) -> list[str] | str:
    host = urlsplit(url)
    try:
        found = socket.getaddrinfo(host.hostname, host.port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return str(exc)
    return [str(a[4][0]) for a in found]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("stop_file")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--pause", type=float, default=0.1)
    args = parser.parse_args()
    while not os.path.exists(args.stop_file):
        began = time.time()
        record: dict[str, object] = {"t": began}
        try:
            conn = SearchConnection(args.url, distrib=False, timeout=args.timeout)
            record["hits"] = conn.new_context(project="CMIP6", latest=True).hit_count
        except Exception as exc:  # noqa: BLE001 - reported, the test decides
            record["error"] = f"{type(exc).__name__}: {exc}"[-400:]
            record["resolves_now"] = _addresses(args.url)
        record["s"] = round(time.time() - began, 3)
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        time.sleep(args.pause)


if __name__ == "__main__":
    main()
