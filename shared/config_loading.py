"""Loading the settings once per process: legacy-key notices, one error line, exit code 2.

`load_settings()` is called once per process (by `dashboard_project.settings`, through
`load_settings_or_exit`); an invalid value stops start-up with one line naming the key and where
it came from, with the user and password of any URL and the secret key never shown.
"""

from __future__ import annotations

import os
import re
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from shared.config import ENV_PREFIX, Settings
from shared.config_file import CONFIG_PATH_ENV, ConfigError, check_yaml
from shared.legacy_yaml import translate_legacy

CONFIG_EXIT_CODE = 2
# Settings whose value is never shown in an error, whatever is wrong with it.
SECRET_SETTINGS = frozenset({"secret_key"})
# The user-info part of any URL in an error line (scheme://user:password@host): everything up
# to the last '@' before a space or quote, so that a password holding '@', ':' or '/' goes too.
_URL_USERINFO_RE = re.compile(r"://[^\s'\"]*@")


def load_settings() -> Settings:
    """Build and validate the settings from config.yaml and the environment.

    Raises ConfigError whose message is one line naming the key, its origin and the problem.
    """
    yaml_path = os.environ.get(CONFIG_PATH_ENV) or None
    _, notices = translate_legacy(check_yaml(yaml_path))
    for notice in notices:
        print(f"config: {yaml_path}: {notice}", file=sys.stderr)
    try:
        config = Settings()
    except SettingsError as exc:
        # Raised for environment values that must be JSON (lists) and are not.
        raise ConfigError(without_passwords(f"invalid configuration: {exc}")) from None
    except ValidationError as exc:
        # `from None`: the pydantic error holds the raw input (a traceback would show it).
        raise ConfigError(without_passwords(_describe(exc, yaml_path))) from None
    return config


def without_passwords(text: str) -> str:
    """`text` with the user and password of every URL in it replaced by `***`."""
    return _URL_USERINFO_RE.sub("://***@", text)


def _origin(field: str, yaml_path: str | None) -> str:
    env_name = ENV_PREFIX + field.upper()
    if env_name in os.environ:
        return f"{env_name} (environment)"
    if yaml_path:
        return f"{field} ({yaml_path})"
    return field


def _describe(exc: ValidationError, yaml_path: str | None) -> str:
    error = exc.errors()[0]
    message = error["msg"].removeprefix("Value error, ")
    if error["loc"]:
        field = str(error["loc"][0])
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        elif field in SECRET_SETTINGS:
            pass  # the problem, never the value
        else:
            message = f"{message} (got {error.get('input')!r})"
    else:  # a check across fields reports "field: problem"
        field, _, message = message.partition(": ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid configuration: {_origin(field, yaml_path)}: {message}{more}"


def load_settings_or_exit() -> Settings:
    """Load the settings; on an invalid value print the one line and exit with code 2."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        raise SystemExit(CONFIG_EXIT_CODE) from None
