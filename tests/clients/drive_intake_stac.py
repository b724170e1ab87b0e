"""Drive intake-esgf's STAC index class (`STACESGFIndex`) against our STAC API.

Run with the intake_esgf client venv (REQUESTS_CA_BUNDLE naming our CA, since the class
always speaks https):

    .venv-clients/intake_esgf/bin/python tests/clients/drive_intake_stac.py 127.0.0.1:PORT/stac \
        --search '{"variable_id": "tas"}' --workdir DIR

The class opens `https://<url>` with pystac-client, searches collection `cmip6` with a CQL2
JSON filter over `properties.cmip6:*` (and `retracted = false`), and reads file URLs from the
items' assets. Prints ONE JSON object: the dataframe rows and the file infos it built.
"""

from __future__ import annotations

import argparse
import json
import os
import traceback


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host", help="host:port/stac of the index (served over TLS)")
    p.add_argument("--search", default="{}", help="JSON keywords for STACESGFIndex.search()")
    p.add_argument("--workdir", required=True, help="HOME for intake-esgf's config and caches")
    args = p.parse_args()
    os.environ["HOME"] = args.workdir
    from intake_esgf.core.stac import STACESGFIndex

    out: dict[str, object] = {}
    try:
        index = STACESGFIndex(url=args.host)
        frame = index.search(**json.loads(args.search))
        rows = frame.to_dict(orient="records")
        out["rows"] = rows
        infos = index.get_file_info([r["id"] for r in rows])
        out["files"] = [
            {"dataset_id": i["dataset_id"], "path": str(i["path"]), "urls": i["HTTPServer"]}
            for i in infos
        ]
    except Exception as exc:  # noqa: BLE001 - reported, the test decides
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["trace"] = traceback.format_exc(limit=6)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
