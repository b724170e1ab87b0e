"""`esgf-ha cert issue`: a client certificate signed by a service's federation CA."""

from __future__ import annotations

import re
from pathlib import Path

import click
import orjson

from esgf_ha.common.tls import issue_client_cert

PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", re.S)


@click.group(
    epilog="""\b
Examples:
  esgf-ha cert issue --state-dir state/master --cn publisher.example.org
"""
)
def cert() -> None:
    """TLS client certificates for publishing (the legacy X.509 path)."""


@cert.command(
    "issue",
    epilog="""\b
Examples:
  esgf-ha cert issue --state-dir state/master --cn publisher.example.org
  esgf-ha publish --index https://127.0.0.1:8443 --cacert state/master/tls/ca.pem \\
      --cert state/master/tls/clients/publisher.example.org.pem --data-node dn ...
  curl --cacert state/master/tls/ca.pem --cert state/master/tls/clients/NAME.pem ...
""",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="state directory of the index whose CA signs (its CA is made if missing)",
)
@click.option("--cn", required=True, help="common name: who the certificate is for")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="where to write the PEM files [default: STATE/tls/clients]",
)
@click.option("--json", "as_json", is_flag=True, help="print the paths as JSON")
def issue(state_dir: Path, cn: str, out_dir: Path | None, as_json: bool) -> None:
    """Write a client certificate and key signed by the index's CA, and print their paths.

    The index (with --tls) accepts this certificate in place of a bearer token on
    /api/v1/publish and /esg-search/ws/*. Three files: NAME.pem (certificate and key in one,
    as curl, httpx and esgcet's `cert:` want it), NAME.crt.pem and NAME.key.pem.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", cn):
        raise click.UsageError("--cn may hold letters, digits and . _ @ - (at most 64)")
    out = (out_dir or state_dir / "tls" / "clients").resolve()
    combined = issue_client_cert(state_dir, cn, out / f"{cn}.pem")
    blocks = PEM_BLOCK.findall(combined.read_bytes())
    whole = [m.group(0) for m in PEM_BLOCK.finditer(combined.read_bytes())]
    crt = b"".join(b for b, kind in zip(whole, blocks, strict=True) if kind == b"CERTIFICATE")
    key = b"".join(b for b, kind in zip(whole, blocks, strict=True) if kind != b"CERTIFICATE")
    crt_path, key_path = out / f"{cn}.crt.pem", out / f"{cn}.key.pem"
    crt_path.write_bytes(crt)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    paths = {
        "pem": str(combined),
        "cert": str(crt_path),
        "key": str(key_path),
        "ca": str((state_dir / "tls" / "ca.pem").resolve()),
    }
    if as_json:
        click.echo(orjson.dumps(paths).decode())
    else:
        for name, path in paths.items():
            click.echo(f"{name}: {path}")
