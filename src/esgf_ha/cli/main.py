"""`esgf-ha`: one program, a subcommand per job."""

from __future__ import annotations

import importlib
from typing import Any

import click

from esgf_ha import __version__

# name -> "module:attribute". Each subcommand's module is imported only when that subcommand
# runs: importing all of them (netCDF4, numpy, cryptography…) cost about 1.5 s per start,
# which a short `esgf-ha replicate` or `publish` paid in full.
COMMANDS = {
    "serve": "esgf_ha.cli.serve:serve",
    "token": "esgf_ha.cli.token:token",
    "demo": "esgf_ha.cli.demo:demo",
    "up": "esgf_ha.cli.up:up",
    "replicate": "esgf_ha.cli.replicate:replicate",
    "status": "esgf_ha.cli.status:status",
    "index": "esgf_ha.cli.index_verify:index",
    "replication": "esgf_ha.cli.replication:replication",
    "publish": "esgf_ha.cli.publish:publish",
    "sample-data": "esgf_ha.cli.sample_data:sample_data",
    "mapfile": "esgf_ha.cli.mapfile:mapfile",
    "retract": "esgf_ha.cli.unpublish:retract",
    "delete": "esgf_ha.cli.unpublish:delete",
    "cert": "esgf_ha.cli.cert:cert",
    "deploy": "esgf_ha.cli.deploy:deploy",
}


def _load(name: str) -> click.Command:
    module, _, attribute = COMMANDS[name].partition(":")
    command: click.Command = getattr(importlib.import_module(module), attribute)
    if name == "serve" and isinstance(command, click.Group) and "dns" not in command.commands:
        from esgf_ha.cli.serve_dns import serve_dns

        command.add_command(serve_dns)
    return command


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; `commands` still lists them all."""

    @property  # type: ignore[override]
    def commands(self) -> dict[str, click.Command]:
        """Every subcommand, imported now: walkers of the tree (help checks, docs) need all."""
        loaded: dict[str, click.Command] = self.__dict__.setdefault("_loaded", {})
        for name in COMMANDS:
            if name not in loaded:
                loaded[name] = _load(name)
        return loaded

    @commands.setter
    def commands(self, value: Any) -> None:
        self.__dict__["_loaded"] = dict(value or {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The one subcommand being run, imported only now."""
        loaded: dict[str, click.Command] = self.__dict__.setdefault("_loaded", {})
        if cmd_name not in loaded and cmd_name in COMMANDS:
            loaded[cmd_name] = _load(cmd_name)
        return loaded.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Names for `--help`, without importing any subcommand."""
        return sorted(COMMANDS)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  esgf-ha demo                                   # a master index with sample data
  esgf-ha serve index --role master --state-dir state/master --listen 127.0.0.1:8080
  esgf-ha token issue --state-dir state/master --scope esgf:publish
""",
)
@click.version_option(__version__, prog_name="esgf-ha")
def cli() -> None:
    """Highly available ESGF search and download services."""


def main() -> None:
    """The `esgf-ha` console script; the program name is fixed so help reads the same
    whether it runs as the script or as `python -m esgf_ha`."""
    cli(prog_name="esgf-ha")
