"""Settings mean what they say: for every service, an option given on the command line beats
its environment variable, which beats the default; every documented variable has an effect;
a bad value is a usage error naming the option and the variable, never a traceback.

Most checks build the settings through the command's own path (click's parsing, then the
same `*_settings_from_cli` function the command calls); a few start the real services with
nothing but environment variables and observe them over sockets.

The settings tables in the docs are generated; after changing a settings class, rewrite them
with `PYTHONPATH=src .venv/bin/python -m tests.test_settings`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import httpx
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, generate_private_key
from pydantic_settings import BaseSettings

from esgf_ha.cli.main import cli
from esgf_ha.cli.publish import publish
from esgf_ha.cli.serve import (
    data_settings_from_cli,
    index_settings_from_cli,
    serve_data,
    serve_index,
)
from esgf_ha.cli.serve_dns import serve_dns
from esgf_ha.cli.settings_cli import SettingOption, SettingsCommand, settings_table
from esgf_ha.common.auth import issue_token
from esgf_ha.records.samples import as_batch, cmip6_samples
from tests.servers import IndexServer, wait_ready

ROOT = Path(__file__).resolve().parents[1]
DOCS = {"index": ROOT / "docs" / "index-node.md", "data": ROOT / "docs" / "data-node.md"}
BUILDERS: dict[str, Callable[[dict[str, Any]], BaseSettings]] = {
    "index": index_settings_from_cli,
    "data": data_settings_from_cli,
}
COMMANDS: dict[str, SettingsCommand] = {"index": serve_index, "data": serve_data}  # type: ignore[dict-item]
# options that are about the process, not the service's settings
PROCESS_OPTIONS = {
    "index": {"token_file", "drain_seconds", "grace_seconds", "log_level"},
    "data": {
        "write_nginx_config",
        "nginx_listen",
        "nginx_dir",
        "drain_seconds",
        "grace_seconds",
        "log_level",
    },
}
SHARED_VARIABLES = ("ESGF_HA_DRAIN_SECONDS", "ESGF_HA_GRACE_SECONDS", "ESGF_HA_UPSTREAM_TOKEN")
UP = "http://127.0.0.1:9/up"
JWKS = "http://127.0.0.1:9/jwks.json"


@dataclass
class Case:
    """One settings field: a variable's text and the value it gives, an option giving another
    value, options the case needs to be valid, and the variable's text while the option is
    given (when the first would clash with the option)."""

    env: str
    value: Any
    cli: list[str] | None = None
    cli_value: Any = None
    extra: list[str] = field(default_factory=list)
    against: str | None = None


F = "{f}"  # the test's file directory, filled in per test
P = Path(F)
REPLICA = ["--role", "replica", "--upstream", UP, "--token", "t"]

TLS_CASES = {
    "tls": Case("true", True, ["--no-tls"], False),
    "tls_cert": Case(
        F + "/cert.pem", P / "cert.pem", ["--tls-cert", F + "/cert2.pem"], P / "cert2.pem",
        extra=["--tls-key", F + "/key.pem"],
    ),
    "tls_key": Case(
        F + "/key.pem", P / "key.pem", ["--tls-key", F + "/key2.pem"], P / "key2.pem",
        extra=["--tls-cert", F + "/cert.pem"],
    ),
    "hostnames": Case(
        '["a.example"]', ["a.example"],
        ["--hostname", "b.example", "--hostname", "c.example"], ["b.example", "c.example"],
    ),
    "jwks_url": Case(JWKS + "?a", JWKS + "?a", ["--jwks-url", JWKS + "?b"], JWKS + "?b"),
    "header_timeout": Case("0.5", 0.5, ["--header-timeout", "3"], 3.0),
    "max_connections": Case("7", 7, ["--max-connections", "9"], 9),
}  # fmt: skip

INDEX_CASES = {
    **TLS_CASES,
    "role": Case("replica", "replica", REPLICA, "replica", extra=REPLICA[2:], against="master"),
    "state_dir": Case("/srv/a", Path("/srv/a"), ["--state-dir", "/srv/b"], Path("/srv/b")),
    "listen": Case("127.0.0.7:0", "127.0.0.7:0", ["--listen", "127.0.0.8:0"], "127.0.0.8:0"),
    "client_ca": Case(F + "/ca.pem", P / "ca.pem", ["--client-ca", F + "/ca2.pem"], P / "ca2.pem"),
    "token_issuer": Case(
        "https://a.example", "https://a.example", ["--token-issuer", "https://b.example"],
        "https://b.example", extra=["--jwks-url", JWKS],
    ),
    "token_audience": Case(
        "aud-a", "aud-a", ["--token-audience", "aud-b"], "aud-b", extra=["--jwks-url", JWKS]
    ),
    "ws_anonymous_from": Case(
        '["10.0.0.0/8"]', ["10.0.0.0/8"], ["--ws-anonymous-from", "192.168.0.0/16"],
        ["192.168.0.0/16"],
    ),
    "max_body_bytes": Case("1234", 1234),
    "max_ws_body_bytes": Case("1234", 1234),
    "max_batch_records": Case("12", 12),
    "max_record_fields": Case("12", 12),
    "max_field_values": Case("12", 12),
    "max_value_chars": Case("12", 12),
    "facets_file": Case(
        F + "/a.toml", P / "a.toml", ["--facets-file", F + "/b.toml"], P / "b.toml"
    ),
    "search_timeout": Case("2.5", 2.5, ["--search-timeout", "0"], 0.0),
    "upstream": Case(
        UP + "/a", UP + "/a", ["--upstream", "https://127.0.0.1:9/b"], "https://127.0.0.1:9/b",
        extra=["--role", "replica", "--token", "t"],
    ),
    "upstream_token": Case(
        "tok-env", "tok-env", ["--token", "tok-cli"], "tok-cli",
        extra=["--role", "replica", "--upstream", UP],
    ),
    "upstream_ca": Case(
        F + "/ca.pem", P / "ca.pem", ["--upstream-ca", F + "/ca2.pem"], P / "ca2.pem"
    ),
    "max_lag": Case("2.5", 2.5, ["--max-lag", "4"], 4.0),
    "workers": Case("auto", "auto", ["--workers", "3"], 3),
}  # fmt: skip

DATA_CASES = {
    **TLS_CASES,
    "state_dir": Case("/srv/a", Path("/srv/a"), ["--state-dir", "/srv/b"], Path("/srv/b")),
    "listen": Case("127.0.0.7:0", "127.0.0.7:0", ["--listen", "127.0.0.8:0"], "127.0.0.8:0"),
    "roots": Case(
        '{"a": "' + F + '"}', {"a": P}, ["--root", f"b={F}", "--root", f"c={F}/x"],
        {"b": P, "c": P / "x"},
    ),
    "restricted": Case(
        '["a"]', ["a"], ["--restricted", "b"], ["b"], extra=["--root", f"b={F}", "--jwks-url", JWKS]
    ),
    "index_url": Case(UP + "/a", UP + "/a", ["--index", UP + "/b"], UP + "/b"),
    "index_ca": Case(F + "/ca.pem", P / "ca.pem", ["--index-ca", F + "/ca2.pem"], P / "ca2.pem"),
    "data_node": Case("a.example", "a.example", ["--data-node", "b.example:8443"], "b.example:8443"),
    "token_public_keys": Case(
        '["' + F + '/pub.pem"]', [P / "pub.pem"], ["--token-public-key", F + "/pub2.pem"],
        [P / "pub2.pem"],
    ),
    "lookup_ttl": Case("7", 7.0),
    "lookup_cache_size": Case("7", 7),
    "sendfile_min_bytes": Case("7", 7),
    "sendfile_threads": Case("0", 0),
    "chunk_bytes": Case("4096", 4096),
    "opendap_max_bytes": Case("1000", 1000),
    "accel_prefix": Case("/_a", "/_a", ["--accel-prefix", "/_b"], "/_b"),
}  # fmt: skip

CASES = {"index": INDEX_CASES, "data": DATA_CASES}


def fill(value: Any, files: Path) -> Any:
    """`value` with the file directory placeholder replaced by the test's own."""
    if isinstance(value, str):
        return value.replace(F, str(files))
    if isinstance(value, Path):
        return Path(str(value).replace(F, str(files)))
    if isinstance(value, list):
        return [fill(v, files) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, files) for k, v in value.items()}
    return value


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("cert", "cert2", "key", "key2", "ca", "ca2", "pub", "pub2"):
        (tmp_path / f"{name}.pem").write_text("placeholder: only its existence is checked here\n")
    (tmp_path / "a.toml").write_text("")
    (tmp_path / "b.toml").write_text("")
    (tmp_path / "x").mkdir()
    return tmp_path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No service variable from the caller's environment leaks into a check."""
    for name in list(os.environ):
        if name.startswith(("ESGF_HA_INDEX", "ESGF_HA_DATA_")) or name in SHARED_VARIABLES:
            monkeypatch.delenv(name)
    return monkeypatch


def settings_from(service: str, args: list[str]) -> BaseSettings:
    """What `esgf-ha serve <service> ARGS` would run with, in the current environment."""
    command = COMMANDS[service]
    ctx = command.make_context(service, list(args))
    return BUILDERS[service](ctx.params)


def base_args(service: str, name: str, files: Path) -> list[str]:
    # a data node needs a root; the roots case brings its own
    return ["--root", f"a={files}"] if service == "data" and name != "roots" else []


def variable(service: str, name: str) -> str:
    cls = COMMANDS[service].settings_class
    return f"{cls.model_config.get('env_prefix')}{name}".upper()


@pytest.mark.parametrize("service", ["index", "data"])
def test_every_setting_has_a_case(service: str) -> None:
    assert set(CASES[service]) == set(COMMANDS[service].settings_class.model_fields)


@pytest.mark.parametrize("service", ["index", "data"])
def test_every_option_is_a_setting_or_about_the_process(
    service: str, clean_env: pytest.MonkeyPatch
) -> None:
    """An option outside the settings would bypass the environment and these checks."""
    command = COMMANDS[service]
    fields = command.settings_class.model_fields
    unset = command.make_context(service, []).params
    for param in command.params:
        if param.name in fields:
            assert isinstance(param, SettingOption), param.name
            # "not given" must reach the builder as such: a default would hide the variable
            assert unset[param.name] in (None, ()), param.name
        else:
            assert param.name in PROCESS_OPTIONS[service], f"{param.name} is not a setting"


@pytest.mark.parametrize(("service", "name"), [(s, n) for s, cases in CASES.items() for n in cases])
def test_variable_alone_has_an_effect(
    service: str, name: str, files: Path, clean_env: pytest.MonkeyPatch
) -> None:
    case = CASES[service][name]
    default = (
        COMMANDS[service].settings_class.model_fields[name].get_default(call_default_factory=True)
    )
    assert fill(case.value, files) != default, "the case must tell the variable from the default"
    clean_env.setenv(variable(service, name), fill(case.env, files))
    settings = settings_from(service, base_args(service, name, files) + fill(case.extra, files))
    assert getattr(settings, name) == fill(case.value, files)


@pytest.mark.parametrize(
    ("service", "name"), [(s, n) for s, cases in CASES.items() for n, c in cases.items() if c.cli]
)
def test_option_beats_variable(
    service: str, name: str, files: Path, clean_env: pytest.MonkeyPatch
) -> None:
    case = CASES[service][name]
    assert case.cli is not None
    env = fill(case.env if case.against is None else case.against, files)
    clean_env.setenv(variable(service, name), env)
    args = base_args(service, name, files) + fill(case.extra + case.cli, files)
    settings = settings_from(service, args)
    assert getattr(settings, name) == fill(case.cli_value, files)
    if case.against is None:
        assert fill(case.cli_value, files) != fill(case.value, files), "the case proves nothing"


@pytest.mark.parametrize("service", ["index", "data"])
def test_defaults_apply_when_nothing_is_given(
    service: str, files: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings = settings_from(service, base_args(service, "", files))
    for name, info in type(settings).model_fields.items():
        if name != "roots":
            assert getattr(settings, name) == info.get_default(call_default_factory=True), name


def test_the_older_upstream_token_variable_still_works(
    files: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("ESGF_HA_INDEX_ROLE", "replica")
    clean_env.setenv("ESGF_HA_INDEX_UPSTREAM", UP)
    clean_env.setenv("ESGF_HA_UPSTREAM_TOKEN", "older")
    assert settings_from("index", []).upstream_token == "older"  # type: ignore[attr-defined]
    clean_env.setenv("ESGF_HA_INDEX_UPSTREAM_TOKEN", "newer")
    assert settings_from("index", []).upstream_token == "newer"  # type: ignore[attr-defined]
    token_file = files / "token"
    token_file.write_text("from-file\n")
    settings = settings_from("index", ["--token", "cli", "--token-file", str(token_file)])
    assert settings.upstream_token == "from-file"  # type: ignore[attr-defined]


def test_nginx_mode_prefix_is_ours_unless_chosen(
    files: Path, clean_env: pytest.MonkeyPatch
) -> None:
    base = ["--root", f"a={files}", "--write-nginx-config", str(files / "n.conf")]
    assert settings_from("data", base).accel_prefix == "/_esgf_internal"  # type: ignore[attr-defined]
    clean_env.setenv("ESGF_HA_DATA_ACCEL_PREFIX", "/_env")
    assert settings_from("data", base).accel_prefix == "/_env"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "env", "hint"),
    [
        (["serve", "dns", "-c", "{c}"], "ESGF_HA_DRAIN_SECONDS", "drain_seconds"),
        (["serve", "index"], "ESGF_HA_GRACE_SECONDS", "grace_seconds"),
        (["serve", "data"], "ESGF_HA_DRAIN_SECONDS", "drain_seconds"),
    ],
)
def test_shutdown_variables_reach_every_service(
    command: list[str], env: str, hint: str, files: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """The drain and grace times are the process's, shared by the three services."""
    config = files / "federation.yaml"
    config.write_text("")
    group = {"index": serve_index, "data": serve_data, "dns": serve_dns}[command[1]]
    args = [a.replace("{c}", str(config)) for a in command[2:]]
    default = {"drain_seconds": 0.0, "grace_seconds": 20.0}[hint]
    assert group.make_context("x", list(args)).params[hint] == default
    clean_env.setenv(env, "5")
    assert group.make_context("x", list(args)).params[hint] == 5.0
    flag = "--" + hint.replace("_", "-")
    assert group.make_context("x", [*args, flag, "7"]).params[hint] == 7.0


def test_publisher_variables(files: Path, clean_env: pytest.MonkeyPatch) -> None:
    args = ["--data-node", "dn.example", "--root", f"a={files}", str(files)]
    clean_env.setenv("ESGF_HA_INDEX", "http://127.0.0.1:9/env")
    clean_env.setenv("ESGF_HA_TOKEN", "env-token")
    params = publish.make_context("publish", list(args)).params
    assert (params["index_url"], params["token"]) == ("http://127.0.0.1:9/env", "env-token")
    given = ["--index", "http://127.0.0.1:9/cli", "--token", "cli-token", *args]
    params = publish.make_context("publish", given).params
    assert (params["index_url"], params["token"]) == ("http://127.0.0.1:9/cli", "cli-token")


BAD = [
    ("index", [], {"ESGF_HA_INDEX_MAX_LAG": "soon"}, "--max-lag / ESGF_HA_INDEX_MAX_LAG"),
    ("index", [], {"ESGF_HA_INDEX_MAX_LAG": "0"}, "--max-lag / ESGF_HA_INDEX_MAX_LAG"),
    ("index", [], {"ESGF_HA_INDEX_ROLE": "replica"}, "--upstream / ESGF_HA_INDEX_UPSTREAM"),
    ("index", ["--role", "replica", "--upstream", UP], {}, "--token / --token-file"),
    ("index", [], {"ESGF_HA_INDEX_ROLE": "boss"}, "--role / ESGF_HA_INDEX_ROLE"),
    ("index", ["--upstream", UP], {}, "only a replica"),
    (
        "index",
        ["--role", "replica", "--token", "t"],
        {"ESGF_HA_INDEX_UPSTREAM": "ftp://x"},
        "http(s)",
    ),
    ("index", [], {"ESGF_HA_INDEX_TOKEN_ISSUER": "x"}, "--token-issuer / ESGF_HA_INDEX_TOKEN"),
    ("index", [], {"ESGF_HA_INDEX_TLS_CERT": "/no/such.pem"}, "--tls-key"),
    ("index", [], {"ESGF_HA_INDEX_CLIENT_CA": "/no/such.pem"}, "/no/such.pem is not a file"),
    ("index", [], {"ESGF_HA_INDEX_HOSTNAMES": "a,b"}, "ESGF_HA_INDEX_HOSTNAMES"),
    ("index", [], {"ESGF_HA_INDEX_MAX_BATCH_RECORDS": "-1"}, "ESGF_HA_INDEX_MAX_BATCH_RECORDS"),
    ("index", ["--listen", "nonsense"], {}, "HOST:PORT"),
    ("index", ["--workers", "0"], {}, "--workers"),
    ("index", [], {"ESGF_HA_INDEX_WORKERS": "many"}, "ESGF_HA_INDEX_WORKERS"),
    ("data", [], {}, "--root / ESGF_HA_DATA_ROOTS"),
    ("data", ["--root", "a=/tmp"], {"ESGF_HA_DATA_LISTEN": "here"}, "ESGF_HA_DATA_LISTEN"),
    ("data", [], {"ESGF_HA_DATA_ROOTS": '{"../x": "/tmp"}'}, "root name"),
    ("data", ["--root", "a=/tmp", "--restricted", "b"], {}, "unknown roots"),
    ("data", ["--root", "a=/tmp"], {"ESGF_HA_DATA_RESTRICTED": '["a"]'}, "jwks_url"),
    ("data", ["--root", "a=/tmp"], {"ESGF_HA_DATA_ACCEL_PREFIX": "x"}, "start with /"),
    ("data", ["--root", "nopath"], {}, "NAME=PATH"),
]


@pytest.mark.parametrize(("service", "args", "env", "hint"), BAD)
def test_bad_values_are_usage_errors(
    service: str, args: list[str], env: dict[str, str], hint: str, clean_env: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    result = CliRunner().invoke(cli, ["serve", service, *args], prog_name="esgf-ha")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert hint in result.output and "Traceback" not in result.output


def test_a_bad_variable_stops_the_real_program_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "ESGF_HA_INDEX_STATE_DIR": str(tmp_path), "ESGF_HA_INDEX_MAX_LAG": "x"}
    result = subprocess.run(
        [sys.executable, "-m", "esgf_ha", "serve", "index"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ESGF_HA_INDEX_MAX_LAG" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "index.db").exists()


# -- real services configured by the environment alone ----------------------------------------


def start(service: str, state_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    log_path = state_dir / "server.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("ESGF_HA_INDEX", "ESGF_HA_DATA_"))
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "esgf_ha", "serve", service],
            env={**clean, **env},
            stdout=log,
            stderr=log,
        )
    try:
        return proc, wait_ready(state_dir, service, proc, False, 60, log_path)
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_data_node_runs_from_the_environment_alone(tmp_path: Path) -> None:
    (tmp_path / "data" / "x").mkdir(parents=True)
    (tmp_path / "data" / "x" / "f.nc").write_bytes(b"0123456789")
    state = tmp_path / "state"
    proc, url = start(
        "data",
        state,
        {
            "ESGF_HA_DATA_STATE_DIR": str(state),
            "ESGF_HA_DATA_LISTEN": "127.0.0.7:0",
            "ESGF_HA_DATA_ROOTS": json.dumps({"envroot": str(tmp_path / "data")}),
            "ESGF_HA_DATA_HEADER_TIMEOUT": "0.5",
        },
    )
    try:
        assert url.startswith("http://127.0.0.7:")
        r = httpx.get(f"{url}/thredds/fileServer/envroot/x/f.nc", timeout=10)
        assert r.status_code == 200 and r.content == b"0123456789"
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            started = time.monotonic()
            assert sock.recv(1) == b""  # closed by the node, not by our timeout
            assert time.monotonic() - started < 5  # the default would wait 20 s
    finally:
        stop(proc)


class JWKSServer:
    """An external token issuer's JWKS document on a loopback port."""

    def __init__(self, key: RSAPrivateKey) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JWKSServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def issuer_key() -> RSAPrivateKey:
    return generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks(issuer_key: RSAPrivateKey) -> Iterator[JWKSServer]:
    with JWKSServer(issuer_key) as server:
        yield server


def test_external_tokens_must_carry_the_configured_issuer_and_audience(
    tmp_path: Path, issuer_key: RSAPrivateKey, jwks: JWKSServer
) -> None:
    state = tmp_path / "index"
    proc, url = start(
        "index",
        state,
        {
            "ESGF_HA_INDEX_STATE_DIR": str(state),
            "ESGF_HA_INDEX_LISTEN": "127.0.0.7:0",
            "ESGF_HA_INDEX_JWKS_URL": jwks.url,
            "ESGF_HA_INDEX_TOKEN_ISSUER": "https://idp.example",
            "ESGF_HA_INDEX_TOKEN_AUDIENCE": "esgf-ha-index",
        },
    )

    def token(**claims: object) -> str:
        body = {"sub": "ext", "scope": "esgf:replicate", "exp": int(time.time()) + 600, **claims}
        return jwt.encode(body, issuer_key, algorithm="RS256", headers={"kid": "k1"})

    def status(bearer: str) -> int:
        headers = {"Authorization": f"Bearer {bearer}"}
        return httpx.get(f"{url}/api/v1/changes", headers=headers, timeout=10).status_code

    try:
        assert url.startswith("http://127.0.0.7:")
        good = {"iss": "https://idp.example", "aud": "esgf-ha-index"}
        assert status(token(**good)) == 200
        assert status(token(**{**good, "aud": "another-service"})) == 401
        assert status(token(**{**good, "iss": "https://evil.example"})) == 401
        assert status(token(iss="https://idp.example")) == 401  # no audience at all
        assert status(token(aud="esgf-ha-index")) == 401  # no issuer at all
        # the federation's own tokens are not the external issuer's and still work
        assert status(issue_token(state, ["esgf:replicate"], subject="tests")) == 200
    finally:
        stop(proc)


# -- the docs list every setting, generated from the settings classes --------------------------


def table_block(service: str) -> tuple[str, str]:
    """The docs' text and the generated table that must sit between its markers."""
    return DOCS[service].read_text(), settings_table(COMMANDS[service])


def markers(service: str) -> tuple[str, str]:
    return f"<!-- settings:{service} begin -->\n", f"<!-- settings:{service} end -->"


@pytest.mark.parametrize("service", ["index", "data"])
def test_docs_list_every_setting_as_the_code_has_it(service: str) -> None:
    text, table = table_block(service)
    begin, end = markers(service)
    found = re.search(re.escape(begin) + "(.*?)" + re.escape(end), text, re.S)
    assert found, f"{DOCS[service]} lacks the settings table markers"
    assert found.group(1) == table, "stale table: run `python -m tests.test_settings`"
    cls = COMMANDS[service].settings_class
    assert all(f"| `{name}` |" in table for name in cls.model_fields)
    assert all(info.description for info in cls.model_fields.values())
    assert "CLI option given > environment variable > default" in " ".join(text.split())


def write_tables() -> None:
    for service in DOCS:
        text, table = table_block(service)
        begin, end = markers(service)
        start_at = text.index(begin) + len(begin)
        DOCS[service].write_text(text[:start_at] + table + text[text.index(end) :])


if __name__ == "__main__":
    write_tables()
    click.echo("rewrote the settings tables in " + ", ".join(str(p) for p in DOCS.values()))


@pytest.fixture
def hurried_index(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Iterator[IndexServer]:
    """An index whose search time limit, set in the environment only, no search can meet."""
    clean_env.setenv("ESGF_HA_INDEX_SEARCH_TIMEOUT", "0.000001")
    server = IndexServer(tmp_path / "hurried").start()
    try:
        assert server.publish(as_batch(cmip6_samples(3))).status_code == 200
        yield server
    finally:
        server.stop()


def test_search_timeout_variable_holds_stac_searches(hurried_index: IndexServer) -> None:
    """`ESGF_HA_INDEX_SEARCH_TIMEOUT` holds the STAC API's searches as it holds esg-search's
    (tests/test_hostile_reads.py); with the default, 30 s, these answer 200."""
    with hurried_index.client() as c:
        for path, params in [
            ("/stac/search", {"limit": "2"}),
            ("/stac/collections", {}),
        ]:
            r = c.get(path, params=params)
            assert r.status_code == 503, (path, r.text[:300])
            assert "time limit" in r.text and int(r.headers["Retry-After"]) > 0
        assert c.get("/readyz").status_code == 200  # readiness runs no search
