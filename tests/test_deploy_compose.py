"""`esgf-ha deploy compose|secrets`: the checked-in Compose file is the one the federation config
generates, the file describes the services the config names, and secrets are usable tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_public_key

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "deploy" / "compose"


def esgf_ha(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esgf_ha", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_checked_in_compose_file_is_generated_from_the_checked_in_config() -> None:
    made = esgf_ha("deploy", "compose", "-c", "federation.yaml", cwd=COMPOSE_DIR)
    assert made.returncode == 0, made.stderr
    assert made.stdout == (COMPOSE_DIR / "compose.yaml").read_text(), (
        "deploy/compose/compose.yaml is stale: run `esgf-ha deploy compose -c federation.yaml "
        "> compose.yaml` in deploy/compose"
    )


def test_compose_file_runs_every_service_of_the_config_where_the_config_says() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "federation.yaml").read_text())
    doc = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    services = doc["services"]
    expected = {"master", "dns", "publisher"}
    for site in config["sites"]:
        expected |= {f"{site['name']}-{kind}" for kind in ("index", "data", "replicator")}
    assert set(services) == expected
    listen = {name: s["command"][s["command"].index("--listen") + 1]
              for name, s in services.items() if "--listen" in s["command"]}  # fmt: skip
    assert listen["master"] == f"{config['master']['address']}:{config['master']['port']}"
    for site in config["sites"]:
        assert listen[f"{site['name']}-index"] == f"{site['address']}:{site['index_port']}"
        assert listen[f"{site['name']}-data"] == f"{site['address']}:{site['data_port']}"
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["restart"] in ("unless-stopped", "on-failure"), name
        assert "healthcheck" in service, name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            assert source in doc["volumes"] or source.startswith("./"), (name, volume)
        for secret in service.get("secrets", []):
            assert (secret if isinstance(secret, str) else secret["source"]) in doc["secrets"]
    assert services["publisher"]["restart"] == "on-failure"
    # no token or key is written into the file itself
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    assert "eyJ" not in text and "PRIVATE KEY" not in text


def test_a_data_root_outside_the_files_volume_is_refused(tmp_path: Path) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "federation.yaml").read_text())
    config["sites"][1]["data_roots"] = {"esg_dataroot": "/data/elsewhere"}
    (tmp_path / "federation.yaml").write_text(yaml.safe_dump(config))
    made = esgf_ha("deploy", "compose", "-c", "federation.yaml", cwd=tmp_path)
    assert made.returncode == 1
    assert "sites[site-b].data_roots.esg_dataroot" in made.stderr
    assert "Traceback" not in made.stderr


def test_secrets_are_tokens_the_public_key_verifies_and_are_kept_when_run_again(
    tmp_path: Path,
) -> None:
    made = esgf_ha(
        "deploy", "secrets", "-c", str(COMPOSE_DIR / "federation.yaml"), "--out", "s",
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = tmp_path / "s"
    public = load_pem_public_key((out / "keys" / "token-signing.pub.pem").read_bytes())
    scopes = {}
    for role in ("replica", "replicator", "publisher"):
        token = (out / f"{role}.jwt").read_text().strip()
        claims = jwt.decode(token, public, algorithms=["EdDSA"])  # type: ignore[arg-type]
        scopes[role] = set(claims["scope"].split())
        assert (out / f"{role}.jwt").stat().st_mode & 0o077 == 0
    assert scopes["replica"] == {"esgf:replicate"}
    assert scopes["publisher"] == {"esgf:publish"}
    assert {"esgf:replicate", "esgf:publish", "esgf:download"} <= scopes["replicator"]
    if os.geteuid() == 0:
        assert (out / "replica.jwt").stat().st_uid == 10001
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = esgf_ha(
        "deploy", "secrets", "-c", str(COMPOSE_DIR / "federation.yaml"), "--out", "s",
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("command", [["deploy"], ["deploy", "compose"], ["deploy", "secrets"]])
def test_help_has_examples(command: list[str]) -> None:
    shown = esgf_ha(*command, "--help", cwd=REPO)
    assert shown.returncode == 0
    assert "Examples:" in shown.stdout
