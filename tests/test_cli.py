"""The command line: help with examples everywhere, tokens on stdout that the index accepts."""

from __future__ import annotations

import subprocess
import sys

import click
import orjson
import pytest
from click.testing import CliRunner

from esgf_ha.cli.main import cli
from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.servers import IndexServer


def esgf_ha(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "esgf_ha", *args], capture_output=True, text=True, timeout=60
    )


def every_command(group: click.Command = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the program, groups included, found by walking the tree."""
    paths = [path]
    if isinstance(group, click.Group):
        for name, sub in group.commands.items():
            paths += every_command(sub, (*path, name))
    return paths


@pytest.mark.parametrize("command", every_command(), ids=lambda p: " ".join(p) or "esgf-ha")
def test_help_has_examples(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="esgf-ha")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output and "esgf-ha " in result.output


def test_help_through_the_installed_program() -> None:
    result = esgf_ha("serve", "index", "--help")
    assert result.returncode == 0 and "Examples:" in result.stdout


def test_token_issue_prints_a_token_the_index_accepts(index_server: IndexServer) -> None:
    result = esgf_ha(
        "token", "issue", "--state-dir", str(index_server.state_dir), "--scope", "esgf:publish"
    )
    assert result.returncode == 0
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    with index_server.client() as c:
        r = c.post(
            "/api/v1/publish",
            content=orjson.dumps(as_batch(cmip6_samples(1))),
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 200


def test_bad_arguments_are_clear() -> None:
    result = esgf_ha("token", "issue", "--state-dir", "/tmp/x", "--scope", "esgf:everything")
    assert result.returncode == 2 and "esgf:publish" in result.stderr
    result = esgf_ha("serve", "index", "--state-dir", "/tmp/x", "--listen", "nonsense")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr
