"""`esgf-ha status -c FEDERATION.yaml`: the federation at a glance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from esgf_ha.cli.options import federation_config

if TYPE_CHECKING:
    from esgf_ha.federation.config import FederationConfig
import orjson


def _yes(value: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[red]down[/]"}[value]


def _lag(detail: dict[str, Any]) -> str:
    for key in ("lag_seconds", "lag"):
        if isinstance(detail.get(key), int | float):
            return f"{detail[key]:.1f} s"
    return "-"


def _replicated(summary: dict[str, Any] | None) -> str:
    """`published/all datasets, failed files` of a site's data replicator."""
    if summary is None:
        return "-"
    datasets = summary.get("datasets", {})
    failed = summary.get("files", {}).get("failed", {}).get("files", 0)
    text = f"{datasets.get('published', 0)}/{sum(datasets.values())}"
    return text + (f" [red]{failed} failed[/]" if failed else "")


@click.command(
    epilog="""\b
Examples:
  esgf-ha status -c federation.yaml
  esgf-ha status -c federation.yaml --json | jq '.sites[].index.ready'
""",
)
@federation_config
@click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON")
def status(config: FederationConfig, config_path: Path, as_json: bool) -> None:
    """Each site's readiness, replication lag and DNS health, and what the DNS answers now;
    with several DNS servers, each one's view and where they disagree.

    Exits 0 when the master and every site are ready, 1 otherwise."""
    from rich.console import Console
    from rich.table import Table

    from esgf_ha.federation.plan import trust_verify
    from esgf_ha.federation.status import collect

    verify = trust_verify(config)
    state = collect(config, verify)
    all_ready = bool(state.master.ready) and all(
        s.index.ready and (s.data is None or s.data.ready) for s in state.sites
    )
    if as_json:
        sys.stdout.write(orjson.dumps(state.as_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.exit(0 if all_ready else 1)
    console = Console()
    table = Table(title=f"federation {config.name}")
    columns = ("site", "address", "index ready", "seq", "lag", "data ready", "replicated",
               "in DNS", "why")  # fmt: skip
    for column in columns:
        table.add_column(column)
    m = state.master
    table.add_row(
        "master", m.url, _yes(m.ready), str(m.detail.get("seq", "-")), "", "", "",
        "", m.error or "",
    )  # fmt: skip
    for s in state.sites:
        table.add_row(
            s.name,
            s.address,
            _yes(s.index.ready),
            str(s.index.detail.get("seq", "-")),
            _lag(s.index.detail),
            "-" if s.data is None else _yes(s.data.ready),
            _replicated(s.replication),
            "?" if s.healthy_in_dns is None else _yes(s.healthy_in_dns),
            (s.index.error or (s.data.error if s.data else None) or
             ("" if s.healthy_in_dns else s.dns_reason or ""))[:60],
        )  # fmt: skip
    console.print(table)
    for name, addresses in state.answers.items():
        fqdn = config.dns.fqdn(name)
        console.print(f"DNS {fqdn} → {', '.join(addresses) if addresses else '[red]no answer[/]'}")
    if len(state.dns_servers) > 1 or state.dns_disagreements:
        servers = Table(title="DNS servers (each checks every site itself)")
        for column in ("server", "address", "answering", "sites out", "answers"):
            servers.add_column(column)
        for d in state.dns_servers:
            answering = None if d.status is None else d.status.ready
            out = [site for site, healthy in d.healthy.items() if not healthy]
            said = "; ".join(f"{n}: {', '.join(a) or '-'}" for n, a in d.answers.items())
            servers.add_row(d.name, f"{d.address}:{d.port}", _yes(answering),
                            ", ".join(out) or "-", said)  # fmt: skip
        console.print(servers)
        for problem in state.dns_disagreements:
            console.print(f"[red]DNS servers disagree:[/] {problem}")
    sys.exit(0 if all_ready else 1)
