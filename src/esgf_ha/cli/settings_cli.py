"""A service's settings from its command line: an option given beats its environment
variable, which beats the settings class's default.

Options of a `SettingsCommand` default to None, so "not given" can be told from "given the
default"; only given values reach the settings class, which reads the environment for the
rest and holds the one copy of each default (shown in `--help` from there). A rejected value
is reported as a usage error naming both the option and the variable, without a traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

import click
from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings, SettingsError

S = TypeVar("S", bound=BaseSettings)


class SettingsCommand(click.Command):
    """A command whose options fill the fields of one settings class (named by dotted path,
    imported only for `--help` and when the command runs, to keep the CLI quick to start)."""

    def __init__(self, *args: Any, settings: str, **kwargs: Any) -> None:
        """`settings` is "module:Class", resolved only when help or the command needs it."""
        super().__init__(*args, **kwargs)
        self.settings_path = settings

    @property
    def settings_class(self) -> type[BaseSettings]:
        """The settings class, imported on first use."""
        module, _, name = self.settings_path.partition(":")
        cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
        return cls


class SettingOption(click.Option):
    """An option backed by a settings field of the same name: its help shows the field's
    default and environment variable, read from the settings class so they cannot drift."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        """Help's `[default: …; env var: …]`, taken from the settings field, not the option."""
        extra = super().get_help_extra(ctx)
        command = ctx.command
        if (
            isinstance(command, SettingsCommand)
            and self.name in command.settings_class.model_fields
        ):
            cls = command.settings_class
            extra["envvars"] = tuple(env_names(cls, self.name))
            default = shown_default(cls, self.name)
            if default:
                extra["default"] = default
        return extra


def env_names(cls: type[BaseSettings], field: str) -> list[str]:
    """The environment variables a settings field is read from, the preferred one first."""
    alias = cls.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice).upper() for choice in alias.choices]
    if isinstance(alias, str):
        return [alias.upper()]
    return [f"{cls.model_config.get('env_prefix', '')}{field}".upper()]


def shown_default(cls: type[BaseSettings], field: str) -> str:
    """The default as an operator would type it ('' when there is none)."""
    value = cls.model_fields[field].get_default(call_default_factory=True)
    if value is None or value == [] or value == {}:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def given(params: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The options the command line actually gave, by field name: None and an empty repeatable
    option mean "not given" and leave the field to the environment or the default."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in params.items()
        if name in fields and value is not None and value != ()
    }


def build_settings(
    cls: type[S], values: Mapping[str, Any], command: click.Command, hints: Mapping[str, str]
) -> S:
    """`cls(**values)`, turning a rejected value into a usage error that names the option(s)
    (`hints` adds ones that are not named after the field) and the environment variable."""
    try:
        return cls(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str((error.get("ctx") or {}).get("field") or (error["loc"] or ("",))[0])
        message = error["msg"].removeprefix("Value error, ")
        raise click.BadParameter(message, param_hint=hint(cls, field, command, hints)) from None
    except SettingsError as exc:
        # the environment held a value that does not parse (lists and maps are JSON)
        field = next((f for f in cls.model_fields if f'"{f}"' in str(exc)), "")
        raise click.BadParameter(
            "cannot parse the environment's value (a list or map is written as JSON)",
            param_hint=hint(cls, field, command, hints),
        ) from None


def hint(
    cls: type[BaseSettings], field: str, command: click.Command, hints: Mapping[str, str]
) -> str:
    """How the operator sets `field`: its options, then its environment variables."""
    if field not in cls.model_fields:
        return field or "settings"
    options = [p.opts[0] for p in command.params if p.name == field and p.opts]
    if field in hints:
        options.append(hints[field])
    return " / ".join([*options, *env_names(cls, field)])


def settings_table(command: SettingsCommand) -> str:
    """The operator's table of a service's settings (markdown): every field, its environment
    variable(s), its option, its default and its meaning, all read from the code."""
    cls = command.settings_class
    rows = [
        "| setting | environment | option | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for field, info in cls.model_fields.items():
        options = [p.opts[0] for p in command.params if p.name == field and p.opts]
        env = ", ".join(f"`{name}`" for name in env_names(cls, field))
        option = ", ".join(f"`{o}`" for o in options) or "—"
        default = shown_default(cls, field)
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(
            f"| `{field}` | {env} | {option} | {f'`{default}`' if default else '—'} | {meaning} |"
        )
    return "\n".join(rows) + "\n"
