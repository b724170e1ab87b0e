"""Helpers shared by the publisher tests: run the CLI in-process, read the index back."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner, Result

from esgf_ha.cli.main import cli
from tests.servers import IndexServer

ROOT_NAME = "esg_dataroot"


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
