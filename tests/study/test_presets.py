"""nanonas.study.presets: the TOML presets shipped inside the package, and TOML files by path."""

from __future__ import annotations

import pytest

from nanonas.errors import ConfigError
from nanonas.study import StudyConfig, preset, presets


def test_presets_are_shipped_in_the_package_and_valid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert presets() == ["cifar10-nsga2", "cifar10-pareto", "quick"]
    for name in presets():
        StudyConfig(**preset(name))
    assert preset("quick")["widths"] == (8, 16)
    (tmp_path / "broken.toml").write_text("epochs = [")
    with pytest.raises(ConfigError, match="--config broken.toml: not valid TOML"):
        preset("broken.toml")
    with pytest.raises(ConfigError, match="no such file"):
        preset("sub/quick")
