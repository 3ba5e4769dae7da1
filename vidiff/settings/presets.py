"""Find, list and load style presets: TOML files whose keys are the config's field names.

Bundled presets live in vidiff/presets/; a user's own in $XDG_CONFIG_HOME/vidiff/presets
(~/.config/vidiff/presets), where a file of the same name replaces the bundled one.
Presets are data: they are parsed as TOML and checked key by key, never executed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .config import PRESET_KEYS, ConfigError, check_field
from ..errors import VidiffError

import tomllib


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    settings: dict[str, Any]  # config field -> value, only the keys the file sets
    source: str  # where it was read from, for messages and listings


def user_preset_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "vidiff" / "presets"


def _bundled() -> dict[str, Any]:
    folder = resources.files("vidiff.settings") / "presets"
    return {p.name[:-5]: p for p in folder.iterdir() if p.name.endswith(".toml")}


def _users() -> dict[str, Path]:
    folder = user_preset_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in folder.glob("*.toml")}


def available() -> dict[str, Any]:
    """Preset name -> its file, the user's replacing bundled ones of the same name."""
    return {**_bundled(), **_users()}


def list_presets() -> list[Preset]:
    return [load_preset(name) for name in sorted(available())]


def load_preset(name_or_path: str) -> Preset:
    """Load a preset by name (bundled or the user's) or from a path to a .toml file."""
    is_path = name_or_path.endswith(".toml") or os.sep in name_or_path or "/" in name_or_path
    if is_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise VidiffError(f"preset file not found: {name_or_path}")
        return parse_preset(path.read_bytes(), path.stem, str(path))
    presets = available()
    if name_or_path not in presets:
        raise VidiffError(
            f"unknown preset {name_or_path!r}; choose one of {', '.join(sorted(presets))} "
            "(`vidiff presets` lists them), or give a path to a .toml file"
        )
    entry = presets[name_or_path]
    return parse_preset(entry.read_bytes(), name_or_path, str(entry))


def parse_preset(data: bytes, name: str, source: str) -> Preset:
    """Parse and check a preset's TOML text: unknown keys and bad values name the file and key."""
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise VidiffError(f"{source}: not valid TOML: {err}") from None
    description = table.pop("description", "")
    if not isinstance(description, str):
        raise VidiffError(f"{source}: description = {description!r}: must be text")
    for key, value in table.items():
        if key not in PRESET_KEYS:
            raise VidiffError(
                f"{source}: unknown key {key!r}; a preset may set description, {', '.join(PRESET_KEYS)}"
            )
        try:
            check_field(key, value)
        except ConfigError as err:
            raise err.located(source) from None
    return Preset(name=name, description=description, settings=table, source=source)
