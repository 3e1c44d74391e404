"""Where the settings groups read their values: the process environment, then a ``.env`` file.

Precedence, strongest first: keywords given to ``Settings`` (tests, ``replace``), variables set in
the environment, the ``.env`` file, the defaults. The file is ``.env`` in the current directory,
or the one ``CITEWISE_ENV_FILE`` names (``off``: none); that variable is read from the
environment only, since it says where everything else is read from. Only ``CITEWISE_`` names in
the file count: it may sit beside docker compose's own, and ``PROMETHEUS_MULTIPROC_DIR`` must
come from the real environment, which is where prometheus_client reads it.

A file that cannot be read, or that has a line python-dotenv cannot parse, stops the process
rather than being half read: a secret on a malformed line would otherwise go missing quietly.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from pydantic_settings import BaseSettings, DotEnvSettingsSource, SettingsError

ENV_FILE = "CITEWISE_ENV_FILE"
DEFAULT_ENV_FILE = Path(".env")
OFF = "off"
_PREFIX = "citewise_"


class EnvFileError(SettingsError):
    """Raised when the ``.env`` file in use cannot be read: missing (when named by
    ``CITEWISE_ENV_FILE``), unreadable, not UTF-8, or with a line that is not ``NAME=value``."""


def env_file() -> Path | None:
    """The ``.env`` file to read now, or None: ``CITEWISE_ENV_FILE=off``, or no ``./.env``."""
    # The one variable read straight from the environment: it says where the others are read.
    named = (os.environ.get(ENV_FILE) or "").strip()  # noqa: TID251
    if named.lower() == OFF:
        return None
    if not named:
        return DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None
    path = Path(named).expanduser()
    if not path.is_file():
        raise EnvFileError(f"{ENV_FILE}: there is no file {named} (set it to 'off' for none)")
    return path


class DotEnvFile(DotEnvSettingsSource):
    """pydantic-settings' ``.env`` source, checked whole first, keeping ``CITEWISE_`` names."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        if path is not None:
            _check(path)
        super().__init__(settings_cls, env_file=path, env_file_encoding="utf-8")

    def __call__(self) -> dict[str, Any]:
        found = super().__call__()
        return {
            name: value
            for name, value in found.items()
            if name.lower().startswith(_PREFIX) and name.upper() != ENV_FILE
        }


def _check(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EnvFileError(f"{path}: not UTF-8 text ({ENV_FILE}=off ignores it)") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise EnvFileError(f"{path}: cannot be read: {reason}") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:  # the line is not echoed: it may hold a secret
            raise EnvFileError(
                f"{path}: line {binding.original.line} is not NAME=value "
                f"(quote values with spaces; {ENV_FILE}=off ignores the file)"
            )
