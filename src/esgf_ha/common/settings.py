"""Checks every service's settings make the same way.

A rejected combination names the field it blames (in the error's context), so the command line
can point the operator at the option or environment variable to change rather than at a
Python field name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class ServiceSettings(BaseSettings):
    """A service's settings: values given to the constructor (the command line's), then the
    environment, then the defaults. No `.env` file and no secrets directory are read."""

    @classmethod
    def settings_customise_sources(  # noqa: D102 - pydantic-settings' hook, documented there
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _UnlessGiven(env_settings)


class _UnlessGiven(PydanticBaseSettingsSource):
    """A source without the fields an earlier one gave. Left alone, pydantic-settings merges a
    map from the environment into a map given on the command line (`--root b=…` plus
    `ESGF_HA_DATA_ROOTS={"a": …}` would serve both roots); a given value must replace it."""

    def __init__(self, source: PydanticBaseSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self.source = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        given = self.current_state
        return {name: value for name, value in self.source().items() if name not in given}


def setting_error(field: str, message: str) -> PydanticCustomError:
    """A validation error blaming `field`; raise it from a model validator."""
    # the message is a template to pydantic: braces in it would be read as placeholders
    return PydanticCustomError(
        "setting", message.replace("{", "(").replace("}", ")"), {"field": field}
    )


def check_listen(field: str, listen: str) -> None:
    """HOST:PORT with a numeric port, as the server binds it (port 0: any free port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise setting_error(field, f"must be HOST:PORT, got {listen!r}")


def certificate_given(cert: Path | None, key: Path | None) -> bool:
    """Whether the operator gave a certificate (which turns TLS on); it needs its key."""
    if cert is None:
        return False
    if key is None:
        raise setting_error("tls_key", "a certificate (tls_cert) needs its private key")
    return True


def check_files(values: dict[str, Path | list[Path] | None]) -> None:
    """Each path given must be a readable file: found now, not at the first request."""
    for field, value in values.items():
        paths = value if isinstance(value, list) else [value] if value is not None else []
        for path in paths:
            if not path.is_file():
                raise setting_error(field, f"{path} is not a file")
