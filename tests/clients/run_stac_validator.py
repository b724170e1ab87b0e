"""Run stac-api-validator on a machine with no internet access.

Run with the stac client venv, with stac-api-validator's own arguments:

    .venv-clients/stac/bin/python tests/clients/run_stac_validator.py --root-url URL ...

The validator checks items and collections against JSON schemas it downloads. Here, the STAC
core and GeoJSON schemas come from the copies pystac ships (STAC 1.1.0, the version our items
declare). No package ships the extension schemas (file, alternate-assets, cmip6): they are
answered with an empty (permissive) schema and listed on stderr, so the run says what it could
not check; tests/test_stac.py checks those fields itself. Every other request goes out as usual
(to the index under test, on loopback).
"""

from __future__ import annotations

import io
import json
import sys
import urllib.request
from typing import Any

import requests
from pystac.validation.local_validator import get_local_schema_cache

LOCAL = get_local_schema_cache()
PERMISSIVE_HOSTS = ("https://stac-extensions.github.io/",)
unchecked: set[str] = set()


def offline(url: str) -> dict[str, Any] | None:
    if url in LOCAL:
        return LOCAL[url]
    if url.startswith(PERMISSIVE_HOSTS):
        unchecked.add(url)
        return {}
    if url.startswith(("https://schemas.stacspec.org/", "https://geojson.org/")):
        raise RuntimeError(f"no local copy of schema {url}")
    return None


_request = requests.Session.request


def request(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
    schema = offline(str(url))
    if schema is None:
        return _request(self, method, url, *args, **kwargs)
    response = requests.Response()
    response.status_code = 200
    response.url = str(url)
    response._content = json.dumps(schema).encode()
    response.headers["Content-Type"] = "application/json"
    return response


_urlopen = urllib.request.urlopen


def urlopen(url: Any, *args: Any, **kwargs: Any) -> Any:
    target = url.full_url if isinstance(url, urllib.request.Request) else str(url)
    schema = offline(target)
    if schema is None:
        return _urlopen(url, *args, **kwargs)
    return io.BytesIO(json.dumps(schema).encode())


requests.Session.request = request  # type: ignore[method-assign]
urllib.request.urlopen = urlopen  # type: ignore[assignment]

if __name__ == "__main__":
    from stac_api_validator.__main__ import main

    try:
        main()
    finally:
        for url in sorted(unchecked):
            print(f"extension schema not available offline, not checked: {url}", file=sys.stderr)
