"""`-c/--config FEDERATION.yaml` for the commands that read the federation config."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


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
