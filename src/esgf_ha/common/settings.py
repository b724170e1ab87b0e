"""Checks every service's settings make the same way.

A rejected combination names the field it blames (in the error's context), so the command line
can point the operator at the option or environment variable to change rather than at a
Python field name.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_core import PydanticCustomError


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


def check_files(values: dict[str, Path | list[Path] | None]) -> None:
    """Each path given must be a readable file: found now, not at the first request."""
    for field, value in values.items():
        paths = value if isinstance(value, list) else [value] if value is not None else []
        for path in paths:
            if not path.is_file():
                raise setting_error(field, f"{path} is not a file")
