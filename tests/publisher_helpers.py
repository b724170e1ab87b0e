"""Helpers shared by the publisher tests: run the CLI in-process, read the index back."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from esgf_ha.cli.main import cli
from tests.servers import IndexServer

ROOT_NAME = "esg_dataroot"
REAL_DATA_PACKAGE = "esmvaltool_sample_data"  # real CMIP6 files, in the `test` extra


def esgf_ha(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def make_samples(out: Path, project: str, datasets: int, seed: int, *extra: str) -> None:
    result = esgf_ha(
        "sample-data",
        str(out),
        "--project",
        project,
        "--datasets",
        str(datasets),
        "--seed",
        str(seed),
        *extra,
    )
    assert result.exit_code == 0, result.output


def publish(server: IndexServer | None, data: Path, data_node: str, *args: str) -> tuple[int, dict]:
    """`esgf-ha publish --json`; returns (exit code, summary)."""
    target = ["--index", server.url, "--token", server.token()] if server else []
    result = esgf_ha(
        "publish",
        *target,
        "--data-node",
        data_node,
        "--root",
        f"{ROOT_NAME}={data}",
        "--json",
        "--no-progress",
        *args,
    )
    assert result.stdout.strip(), result.output
    return result.exit_code, orjson.loads(result.stdout)


def publish_process(
    server: IndexServer, data: Path, data_node: str, *args: str, timeout: float = 300
) -> tuple[int, dict, str]:
    """`esgf-ha publish --json` as its own process, so that `--jobs N` really starts N
    worker processes (they re-import the program); returns (exit code, summary, stderr)."""
    cmd = [sys.executable, "-m", "esgf_ha", "publish", "--index", server.url]
    cmd += ["--token", server.token(), "--data-node", data_node, "--root", f"{ROOT_NAME}={data}"]
    cmd += ["--json", "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.stdout.strip(), proc.stderr[-4000:]
    return proc.returncode, orjson.loads(proc.stdout), proc.stderr


# fields that name where and when a record was published, not what it holds
PLACE_FIELDS = frozenset(
    {"id", "dataset_id", "data_node", "url", "_timestamp", "_version_", "score"}
)


def holdings(server: IndexServer, data_node: str) -> dict[str, dict]:
    """Every Dataset and File record a data node published, by instance_id, without the
    fields that name the data node: two publications of the same files compare equal."""
    out: dict[str, dict] = {}
    for kind in ("Dataset", "File"):
        for record in docs(server, type=kind, data_node=data_node):
            key = f"{kind}:{record['instance_id']}"
            assert key not in out, key
            out[key] = {k: v for k, v in record.items() if k not in PLACE_FIELDS}
    return out


def docs(server: IndexServer, **params: Any) -> list[dict]:
    body = server.search(limit=10000, **params)
    assert body["response"]["numFound"] == len(body["response"]["docs"])
    return body["response"]["docs"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def http_url(record: dict) -> str:
    (url,) = [u.split("|")[0] for u in record["url"] if u.endswith("|HTTPServer")]
    return url


def seq(server: IndexServer) -> int:
    with server.client() as c:
        return int(c.get("/api/v1/status").json()["seq"])


def one(record: dict, name: str) -> Any:
    value = record.get(name)
    return value[0] if isinstance(value, list) else value


def real_root() -> Path:
    """The DRS root of the real CMIP6 files, found without importing their package (its
    module imports iris, which the publisher does not need)."""
    spec = importlib.util.find_spec(REAL_DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            f"{REAL_DATA_PACKAGE} is missing: install the test extra (pip install -e '.[test]')",
            pytrace=False,
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "data" / "timeseries"
    assert (root / "CMIP6").is_dir(), root
    return root
