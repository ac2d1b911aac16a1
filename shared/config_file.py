"""config.yaml: the file `DASHBOARD_CONFIG` names, read for `Settings`, checked by `load_settings`.

Its own module so that the settings table (`shared/config.py`) and the loading with its one-line
errors (`shared/config_loading.py`) both use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONFIG_PATH_ENV = "DASHBOARD_CONFIG"


class ConfigError(Exception):
    """Raised by `load_settings` when a value is invalid; its text is the one line to print."""


def check_yaml(yaml_path: str | None) -> dict[str, Any]:
    """The mapping in the config file (empty without one); ConfigError naming what is wrong."""
    if not yaml_path:
        return {}
    path = Path(yaml_path)
    if not path.is_file():
        raise ConfigError(f"{CONFIG_PATH_ENV}: no such file: {yaml_path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{CONFIG_PATH_ENV}: {yaml_path} is not valid YAML: {first_line}"
        ) from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{CONFIG_PATH_ENV}: {yaml_path} must hold a mapping of keys to values")
    return loaded or {}


def read_yaml(yaml_path: str | None) -> dict[str, Any]:
    """The config file's mapping; empty if it cannot be read (`load_settings` said why first)."""
    try:
        return check_yaml(yaml_path)
    except ConfigError:
        return {}
