"""Drive the real pystac-client against our STAC API; prints ONE JSON object.

Run with the stac client venv:

    .venv-clients/stac/bin/python tests/clients/drive_stac.py http://127.0.0.1:PORT/stac \
        --searches '[{"collections": ["cmip6"], "filter": "variable_id = \'tas\'"}]'

For each search (keyword arguments of `Client.search`) it reports what pystac-client saw:
`matched()`, the ids of every item it paged through, the number of pages, and for the first
item its assets (href, file:size, file:checksum, alternate hrefs) and properties.
"""

from __future__ import annotations

import argparse
import json
import traceback
from typing import Any

from pystac_client import Client


def run(client: Client, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        search = client.search(**kwargs)
        ids, pages, first = [], 0, None
        for page in search.pages():
            pages += 1
            for item in page.items:
                ids.append(item.id)
                if first is None:
                    first = {
                        "id": item.id,
                        "collection": item.collection_id,
                        "bbox": item.bbox,
                        "properties": item.properties,
                        "assets": {
                            key: {
                                "href": a.href,
                                "file:size": a.extra_fields.get("file:size"),
                                "file:checksum": a.extra_fields.get("file:checksum"),
                                "alternate": {
                                    k: v.get("href")
                                    for k, v in a.extra_fields.get("alternate", {}).items()
                                },
                            }
                            for key, a in item.assets.items()
                        },
                    }
        return {"matched": search.matched(), "ids": ids, "pages": pages, "first": first}
    except Exception as exc:  # noqa: BLE001 - reported, the test decides
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=5)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="the STAC API root, e.g. http://127.0.0.1:8080/stac")
    p.add_argument("--searches", default="[]", help="JSON list of Client.search keywords")
    args = p.parse_args()
    client = Client.open(args.url)
    out: dict[str, Any] = {
        "conforms": {
            name: client.conforms_to(name)
            for name in ("CORE", "ITEM_SEARCH", "FILTER", "FIELDS", "COLLECTIONS", "FEATURES")
        },
        "collections": sorted(c.id for c in client.get_collections()),
        "searches": [run(client, kw) for kw in json.loads(args.searches)],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
