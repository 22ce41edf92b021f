"""Presets: TOML files of StudyConfig's keys, shipped inside the package (nanonas/studies/*.toml).

    config = StudyConfig(**preset("quick"))            # a built-in preset, or a TOML file's path

`--config quick` names one from any directory; a path names any other file. The values are
checked as the CLI's are (nanonas.study.config.coerce, then StudyConfig itself).
"""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path
from typing import Any

from nanonas.errors import ConfigError
from nanonas.study.config import coerce

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["preset", "presets"]

_PRESETS = importlib.resources.files("nanonas") / "studies"


def presets() -> list[str]:
    """The names of the presets shipped with nanonas."""
    if not _PRESETS.is_dir():  # an install that left the package data out
        return []
    return sorted(p.name[: -len(".toml")] for p in _PRESETS.iterdir() if p.name.endswith(".toml"))


def preset(name_or_path: str) -> dict[str, Any]:
    """The StudyConfig keywords of a built-in preset (`quick`) or of a TOML file's path."""
    path = Path(name_or_path)
    if path.is_file():
        text = path.read_text()
    elif name_or_path in presets():
        text = (_PRESETS / f"{name_or_path}.toml").read_text()
    elif path.suffix == ".toml" or len(path.parts) > 1:
        raise ConfigError(f"--config {name_or_path}: no such file")
    else:
        raise ConfigError(
            f"unknown preset {name_or_path!r}; built-in: {', '.join(presets())} "
            "(or give the path of a .toml file)"
        )
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {name_or_path}: not valid TOML ({e})") from None
    return coerce(values, f"--config {name_or_path}")
