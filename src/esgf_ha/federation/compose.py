"""A Compose file for one node, made from a federation config: the same services `esgf-ha up`
runs (see `plan.py`), each in its own container of the esgf-ha image.

Every container uses the host's network, so each service listens on the address and port the
config gives it and the DNS answers with addresses users reach: the config stays the single
description of the federation, with no second set of published ports to keep in step.

Secrets (the token signing key, the tokens of the replicas, replicators and publisher) are
files made once by `secrets()` and mounted read-only; nothing secret is written into the
Compose file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from esgf_ha.common.auth import issue_token, load_or_create_signing_key
from esgf_ha.federation.config import FederationConfig, SiteConfig
from esgf_ha.federation.plan import REPLICA_SCOPES, REPLICATOR_SCOPES, master_url

IMAGE = "localhost/esgf-ha:dev"
STATE = "/var/lib/esgf-ha"
# where a site's files volume is mounted: the image makes this directory for its user, so a new
# volume mounted there is the user's too (the engine copies the directory's owner into it)
FILES = "/srv/esgf"
CONFIG_TARGET = "/etc/esgf-ha/federation.yaml"
IMAGE_UID = 10001  # the image's non-root user, who must be able to read the secrets
TOKEN_TTL = 365 * 86400.0
PUBLISHER_SCOPES = ["esgf:publish"]
# each secret: its file under the secrets directory
SECRET_FILES = {
    "token-signing-key": "keys/token-signing.pem",
    "token-public-key": "keys/token-signing.pub.pem",
    "replica-token": "replica.jwt",
    "replicator-token": "replicator.jwt",
    "publisher-token": "publisher.jwt",
}
DRAIN_SECONDS = 3  # two failed DNS health checks at the default 1 s interval, and one more
GRACE_SECONDS = 20
STOP_GRACE = f"{DRAIN_SECONDS + GRACE_SECONDS + 5}s"
HEALTHCHECK = ["CMD", "/opt/esgf-ha/bin/python", "/usr/local/lib/esgf-ha/livez.py"]


def _url(address: str, port: int, tls: bool = False) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _service(
    command: list[str],
    volumes: list[str],
    *,
    image: str,
    livez: str | None,
    secrets: list[Any] | None = None,
    depends_on: list[str] | None = None,
    restart: str = "unless-stopped",
    drains: bool = True,
) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": image,
        "command": command,
        "network_mode": "host",
        "read_only": True,
        "tmpfs": ["/tmp"],
        "volumes": volumes,
        "restart": restart,
        "stop_signal": "SIGTERM",
        "stop_grace_period": STOP_GRACE,
    }
    environment: dict[str, str] = {}
    if drains:
        environment["ESGF_HA_DRAIN_SECONDS"] = str(DRAIN_SECONDS)
        environment["ESGF_HA_GRACE_SECONDS"] = str(GRACE_SECONDS)
    if livez is not None:
        environment["ESGF_HA_LIVEZ_URL"] = livez
        service["healthcheck"] = {
            "test": list(HEALTHCHECK),
            "interval": "10s",
            "timeout": "3s",
            "retries": 3,
            "start_period": "30s",
        }
    else:
        service["healthcheck"] = {"disable": True}
    if environment:
        service["environment"] = environment
    if secrets:
        service["secrets"] = secrets
    if depends_on:
        service["depends_on"] = depends_on
    return service


def _data_volume(site: SiteConfig) -> str:
    return f"{site.name}-files"


def _data_services(
    site: SiteConfig, master: str, image: str, services: dict[str, Any], volumes: dict[str, Any]
) -> None:
    """A site's data node and replicator, on the site's files volume."""
    files = _data_volume(site)
    volumes[files] = {}
    for name, path in site.data_roots.items():
        if not Path(path).is_relative_to(FILES):
            raise ValueError(
                f"sites[{site.name}].data_roots.{name}: in a Compose deployment data roots "
                f"are directories of the site's files volume, {FILES} or below it"
            )
    roots = [a for name, path in site.data_roots.items() for a in ("--root", f"{name}={path}")]
    data_mount = FILES
    data = f"{site.name}-data"
    volumes[data] = {}
    services[data] = _service(
        ["serve", "data", "--state-dir", STATE,
         "--listen", f"{site.address}:{site.data_port}",
         "--data-node", f"{site.address}:{site.data_port}",
         "--token-public-key", "/run/secrets/token-public-key",
         "--index", site.index_url, *roots],
        [f"{data}:{STATE}", f"{files}:{data_mount}:ro"],
        image=image,
        livez=f"{site.data_url}/livez",
        secrets=["token-public-key"],
        depends_on=[f"{site.name}-index"],
    )  # fmt: skip
    if site.replication is not None:
        if site.replication.selection is not None:
            raise ValueError(
                f"sites[{site.name}].replication.selection: a Compose deployment replicates "
                "by query; put the selection's facets in replication.query"
            )
        root_name, root_path = next(iter(site.data_roots.items()))
        replicator = f"{site.name}-replicator"
        volumes[replicator] = {}
        services[replicator] = _service(
            ["replicate", "--state-dir", STATE, "--index", site.index_url,
             "--master", master, "--token-file", "/run/secrets/replicator-token",
             "--site", site.name, "--data-node", site.data_url or "",
             "--root", f"{root_name}={root_path}",
             "--query", site.replication.query or "", "--follow"],
            [f"{replicator}:{STATE}", f"{files}:{data_mount}"],
            image=image,
            livez=None,
            secrets=["replicator-token"],
            depends_on=[data],
            drains=False,
        )  # fmt: skip


def _publisher(site: SiteConfig, master: str, image: str, sample_datasets: int) -> dict[str, Any]:
    """A one-shot service writing sample data into the site's files and publishing it."""
    root_name, root_path = next(iter(site.data_roots.items()))
    data_node = f"{site.address}:{site.data_port}"
    # the token is a secret file; publish reads it from the environment, so a shell hands
    # it over (and then becomes the publisher, which receives SIGTERM itself)
    script = (
        f"esgf-ha sample-data {root_path} --project CMIP6 --datasets {sample_datasets} "
        f"--seed 1 >/dev/null && ESGF_HA_TOKEN=$(cat /run/secrets/publisher-token) "
        f"exec esgf-ha publish --index {master} --data-node {data_node} "
        f"--url-base {site.data_url} --root {root_name}={root_path} "
        f"--no-progress {root_path}"
    )
    service = _service(
        ["-c", script],
        [f"{_data_volume(site)}:{FILES}"],
        image=image,
        livez=None,
        secrets=["publisher-token"],
        depends_on=["master"],
        restart="on-failure",
        drains=False,
    )
    service["entrypoint"] = ["/bin/sh"]
    return service


def compose(
    config: FederationConfig,
    *,
    config_file: str = "federation.yaml",
    secrets_dir: str = "secrets",
    image: str = IMAGE,
    sample_site: str | None = None,
    sample_datasets: int = 2,
) -> dict[str, Any]:
    """The Compose document. `config_file` and `secrets_dir` are as the Compose file names
    them (relative to it); `sample_site` is the site whose data the publisher service writes
    (sample data) and publishes, the first site with a data node by default."""
    m = config.master
    master = master_url(config)
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}

    volumes["master"] = {}
    services["master"] = _service(
        ["serve", "index", "--role", "master", "--state-dir", STATE,
         "--listen", f"{m.address}:{m.port}"],
        ["master:" + STATE],
        image=image,
        livez=master + "/livez",
        secrets=[{"source": "token-signing-key", "target": f"{STATE}/keys/token-signing.pem"}],
    )  # fmt: skip
    for site in config.sites:
        index = f"{site.name}-index"
        volumes[index] = {}
        services[index] = _service(
            ["serve", "index", "--role", "replica", "--upstream", master,
             "--token-file", "/run/secrets/replica-token", "--state-dir", STATE,
             "--listen", f"{site.address}:{site.index_port}"],
            [f"{index}:{STATE}"],
            image=image,
            livez=site.index_url + "/livez",
            secrets=["replica-token"],
            depends_on=["master"],
        )  # fmt: skip
        if site.data_port is None or not site.data_roots:
            continue
        _data_services(site, master, image, services, volumes)

    publisher_site = _sample_site(config, sample_site)
    if publisher_site is not None:
        services["publisher"] = _publisher(publisher_site, master, image, sample_datasets)

    dns = config.dns
    volumes["dns"] = {}
    services["dns"] = _service(
        ["serve", "dns", "-c", CONFIG_TARGET, "--state-dir", STATE],
        ["dns:" + STATE, f"./{config_file}:{CONFIG_TARGET}:ro"],
        image=image,
        livez=_url(dns.address, dns.http_port) + "/livez" if dns.http_port else None,
        depends_on=[s for s in services if s != "publisher"],
    )

    return {
        "name": config.name,
        "x-podman": {"in_pod": False},
        "services": services,
        "volumes": volumes,
        "secrets": {name: {"file": f"{secrets_dir}/{path}"} for name, path in SECRET_FILES.items()},
    }


def _sample_site(config: FederationConfig, name: str | None) -> SiteConfig | None:
    if name is not None:
        site = config.site(name)
        if site.data_port is None or not site.data_roots:
            raise ValueError(f"site {name!r} has no data node to publish sample data from")
        return site
    return next((s for s in config.sites if s.data_port is not None and s.data_roots), None)


HEADER = """\
# Generated by `esgf-ha deploy compose -c {config}`; do not edit: change the federation config
# and generate again. Secrets: `esgf-ha deploy secrets -c {config} --out {secrets}`.
"""


def render(document: dict[str, Any], config_file: str, secrets_dir: str) -> str:
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)
    return HEADER.format(config=config_file, secrets=secrets_dir) + body


def secrets(out: Path, uid: int | None = IMAGE_UID) -> list[Path]:
    """Make the secret files the Compose file mounts, keeping any that exist (so tokens stay
    valid across upgrades). Readable by the image's user only."""
    out.mkdir(parents=True, exist_ok=True)
    key = load_or_create_signing_key(out)
    public = out / SECRET_FILES["token-public-key"]
    if not public.exists():
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    made = []
    for role, scopes in (
        ("replica", REPLICA_SCOPES),
        ("replicator", REPLICATOR_SCOPES),
        ("publisher", PUBLISHER_SCOPES),
    ):
        path = out / SECRET_FILES[f"{role}-token"]
        if not path.exists():
            path.touch(mode=0o600)  # before the secret is in it
            path.write_text(issue_token(out, scopes, subject=role, ttl=TOKEN_TTL) + "\n")
    for name in SECRET_FILES.values():
        file = out / name
        file.chmod(0o600)
        if uid is not None and os.geteuid() == 0:
            os.chown(file, uid, uid)
        made.append(file)
    return made
