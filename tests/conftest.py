"""Shared fixtures: tiny synthetic data, and a way to run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanonas import data

# A proxy on a port where nothing listens: any download fails at once, as on a machine with
# no network, and no test can reach the internet even where it could.
OFFLINE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}

# The smallest study that still trains for real: synthetic data, width 8, a few epochs.
TINY = ["--dataset", "synthetic", "--widths", "8", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test reads or writes the user's cache or reaches the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def synthetic() -> tuple[data.ImageData, data.ImageData]:
    return data.split(data.load("synthetic"), seed=0)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m nanonas.study ARGS` in `cwd`, offline, as a user would run it."""
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "nanonas.study", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
