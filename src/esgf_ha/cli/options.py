"""Options and option values that several commands share: the federation config, how to
reach the master index, and data roots given as `--root NAME=PATH`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from esgf_ha.publisher.drs_path import Root


def parse_roots(values: Iterable[str]) -> dict[str, Path]:
    """`--root NAME=PATH` values as name → resolved directory; a name may be given once."""
    roots: dict[str, Path] = {}
    for value in values:
        try:
            root = Root.parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--root") from None
        if root.name in roots:
            raise click.BadParameter(f"root {root.name!r} given twice", param_hint="--root")
        roots[root.name] = root.path
    return roots


def parse_root_list(values: Iterable[str]) -> list[Root]:
    """`--root NAME=PATH` values as the publisher's and replicator's `Root` objects."""
    return [Root(name, path) for name, path in parse_roots(values).items()]


def federation_config(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the option and hands the command the validated config as `config` (and the file
    as `config_path`); a bad config ends the command with the error naming the key."""

    @click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        required=True,
        help="the federation config (YAML)",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, config_path: Path, **kwargs: Any) -> Any:
        from esgf_ha.federation.config import ConfigError, load_config

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        return func(*args, config=config, config_path=config_path, **kwargs)

    return wrapper


def index_options(*, required: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--index, --token, --cert, --cacert, --retries: how to reach and authenticate to the
    master (`required=False` where a dry run needs no index)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(_index_option_list(required)):
            func = option(func)
        return func

    return decorate


def _index_option_list(required: bool) -> list[Callable[[Any], Any]]:
    return [
        click.option(
            "--index",
            "index_url",
            required=required,
            envvar="ESGF_HA_INDEX",
            help="base URL of the master index, e.g. https://index.example.org (env ESGF_HA_INDEX)",
        ),
        click.option(
            "--token",
            envvar="ESGF_HA_TOKEN",
            help="bearer token with scope esgf:publish (env ESGF_HA_TOKEN)",
        ),
        click.option(
            "--cert",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="client certificate PEM (certificate and key) from `esgf-ha cert issue`, "
            "instead of a token (needs HTTPS)",
        ),
        click.option(
            "--cacert",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="CA bundle that signed the index's HTTPS certificate (STATE/tls/ca.pem)",
        ),
        click.option(
            "--retries", default=6, show_default=True, help="retries on connection errors and 5xx"
        ),
    ]
