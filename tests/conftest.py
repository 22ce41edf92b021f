"""Shared fixtures: tiny synthetic data, a way to run the real CLI in a subprocess, and the
database servers that shared studies use."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import urllib.parse
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


# The servers CI runs (override with NANONAS_TEST_POSTGRES / _MYSQL / _REDIS). Without one a
# test skips, saying why; with CI=true it fails instead, so CI can never pass by skipping.
SERVERS = {
    "postgresql": os.environ.get(
        "NANONAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("NANONAS_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    "redis": os.environ.get("NANONAS_TEST_REDIS", "redis://127.0.0.1:6379/0"),
}


@functools.cache
def _unreachable(kind: str) -> str | None:
    parts = urllib.parse.urlsplit(SERVERS[kind])
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError as e:
        return f"no {kind} server at {parts.hostname}:{parts.port} ({e})"
    return None


def server(kind: str) -> str:
    """The URL of the `kind` server; skip without one, but fail in CI (CI=true)."""
    reason = _unreachable(kind)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true, so tests that need it must not skip")
        pytest.skip(reason)
    return SERVERS[kind]


# Studies and an export for tests/export, made once per session: training is the slow part.
# (Here, since a second conftest module would shadow this one's name; see tests/export.)


@pytest.fixture(scope="session")
def single(tmp_path_factory):
    from tiny_export import make_single

    return make_single(tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="session")
def pareto(tmp_path_factory):
    from tiny_export import make_pareto

    return make_pareto(tmp_path_factory.mktemp("pareto"))


@pytest.fixture(scope="session")
def exported(single, tmp_path_factory):
    from tiny_export import make_export

    return make_export(single, tmp_path_factory.mktemp("exports") / "best")


# Studies for tests/dashboard and tests/report (tests/dashboard_studies.py).


@pytest.fixture(scope="session")
def dash_single(tmp_path_factory):
    from dashboard_studies import make

    return make(tmp_path_factory.mktemp("dash-single"), objectives=("accuracy",))


@pytest.fixture(scope="session")
def dash_pareto(tmp_path_factory):
    from dashboard_studies import make

    return make(tmp_path_factory.mktemp("dash-pareto"), objectives=("accuracy", "params"))


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at tmp_path/disk; skips where it cannot be mounted (not root, no tmpfs),
    and fails instead under CI."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        why = f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}"
        if os.environ.get("CI") == "true":  # CI runs as root: there it must run, never skip
            pytest.fail(f"{why}; CI=true, so the full-disk tests must not skip")
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write zeros into `folder` until its disk is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
