"""A regular install works: the wheel carries every subpackage and the presets, and
`python -m nanonas.study --config quick` runs from a folder outside the checkout."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

from conftest import OFFLINE

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_a_wheel_installed_without_e_runs_the_quick_preset_anywhere(tmp_path):
    # Build from a clean copy of the sources (a build/ folder left in the checkout would lend
    # the wheel files its configuration leaves out), with this Python's setuptools: no build
    # isolation, so nothing is downloaded.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "nanonas", source / "nanonas", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--wheel-dir", str(wheels), str(source), cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("nanonas-*.whl")

    # A fresh environment that sees this one's packages (torch is gigabytes) but not its
    # editable nanonas: this one's site-packages are put on its path by a plain .pth line, so
    # their own .pth files (the editable install's import hook among them) are not run.
    env_dir = tmp_path / "env"
    venv.create(env_dir, system_site_packages=False, with_pip=False)
    python = env_dir / "bin" / "python"
    env_site = _run(
        str(python), "-c", "import site; print(site.getsitepackages()[0])", cwd=tmp_path
    )
    Path(env_site.stdout.strip(), "base.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = _run(
        sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
        "--no-index", str(wheel), cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    modules = "nanonas", "nanonas.study.cli", "nanonas.samplers.catcma", "nanonas.storage.urls"
    show = f"import importlib; [print(importlib.import_module(m).__file__) for m in {modules}]"
    where = _run(str(python), "-c", show, cwd=elsewhere, env=env)
    assert where.returncode == 0, where.stderr
    assert all(Path(f).is_relative_to(env_dir) for f in where.stdout.split()), where.stdout

    done = _run(
        str(python), "-m", "nanonas.study", "--config", "quick", "--n-trials", "2",
        "--epochs", "1", "--device", "cpu", "--no-progress", cwd=elsewhere, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "best trial:" in done.stdout
    assert (elsewhere / "quick.db").exists()  # the preset's storage, in the working folder
