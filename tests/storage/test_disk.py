"""nanonas.storage.disk and the run it ends: a full disk under SQLite or a journal file is one
line naming the file and its free space, exit status 1, and the trial in flight marked FAIL
where the storage still takes the write, or named as left RUNNING.

A real full disk needs a small tmpfs (root, as in CI); without one that test skips, saying why,
and the fault injected at the file layer below still runs."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
import sqlalchemy
from conftest import OFFLINE, TINY, fill
from optuna.trial import TrialState

from nanonas import records
from nanonas.errors import DiskFull
from nanonas.storage import disk_full, fault, open_storage, where_full
from nanonas.study import StudyConfig, run

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_recognised_through_wrappers_and_is_no_outage():
    full = sqlite3.OperationalError("database or disk is full")
    wrapped = sqlalchemy.exc.OperationalError("UPDATE trials ...", {}, full)
    for error in (ENOSPC, full, wrapped):
        assert disk_full(error) is not None
        assert fault(error) is None  # retrying would wait for ever
    try:
        try:
            raise wrapped
        except Exception as e:
            raise AssertionError("Should not reach.") from e  # Optuna's _run_trial does this
    except AssertionError as chained:
        assert disk_full(chained) is full
    lost = sqlite3.OperationalError("database is locked")
    assert disk_full(lost) is None and disk_full(ValueError("x")) is None


def test_where_full_names_the_file_and_its_free_space(tmp_path):
    line = where_full(f"sqlite:///{tmp_path / 's.db'}")
    assert line.startswith(f"{tmp_path / 's.db'} (") and line.endswith(" free)")
    assert where_full(str(tmp_path / "s.log")).startswith(f"{tmp_path / 's.log'} (")
    assert where_full("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_a_write_failing_with_enospc_fails_the_trial_and_ends_the_run(tmp_path, monkeypatch):
    # The fault at the file layer: the journal file's first curve write finds the disk full;
    # the trial's failure, written after it, still lands (the disk had room for that).
    log = tmp_path / "s.log"
    config = StudyConfig(
        dataset="synthetic", widths=(8,), batch_size=64, device="cpu", epochs=1, n_trials=2,
        val_fraction=0.9, storage=str(log), progress=False,
    )  # fmt: skip
    failing = {"left": 1}
    real = records.write_curve

    def full_once(trial, curve):
        if failing["left"]:
            failing["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device", str(log))
        real(trial, curve)

    monkeypatch.setattr(records, "write_curve", full_once)
    with pytest.raises(DiskFull) as e:
        run(config)
    message = str(e.value)
    assert "\n" not in message
    assert (
        message.startswith(f"disk full: {log} (") and " free); trial 0 was marked FAIL" in message
    )
    (trial,) = optuna.load_study(study_name=config.name, storage=open_storage(str(log))).trials
    assert trial.state == TrialState.FAIL and records.reasons(trial) == ["disk full"]


def test_sqlite_on_a_disk_that_fills_up_mid_trial_is_one_line_and_exit_1(tmp_path, small_disk):
    db = small_disk / "s.db"
    url = f"sqlite:///{db}"
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "nanonas.study", *TINY, "--epochs", "2", "--val-fraction",
           "0.5", "--n-trials", "2", "--storage", url, "--study-name", "s"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, "no trial started"
            with contextlib.suppress(KeyError, sqlalchemy.exc.OperationalError):
                study = optuna.load_study(study_name="s", storage=url)
                if any(records.arch(t) for t in study.get_trials(deepcopy=False)):
                    break
            time.sleep(0.2)
        fill(small_disk)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 1, err
    (line,) = [s for s in err.splitlines() if not s.startswith("[I ")]
    assert line.startswith(f"nanonas: error: disk full: {db} (") and "free); trial " in line
    (small_disk / "filler").unlink()
    trials = optuna.load_study(study_name="s", storage=url).trials
    named = int(line.split("free); trial ", 1)[1].split()[0])
    state = trials[named].state
    if "is left RUNNING" in line:
        assert state == TrialState.RUNNING
    else:
        assert "was marked FAIL" in line and state == TrialState.FAIL


def test_a_study_on_a_disk_that_is_already_full_is_one_line_and_exit_1(tmp_path, small_disk):
    fill(small_disk)
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    db = small_disk / "s.db"
    cmd = [sys.executable, "-m", "nanonas.study", *TINY, "--storage", f"sqlite:///{db}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"nanonas: error: disk full: {db} (")
    assert line.endswith(" free); nothing was written")


def test_a_journal_file_filling_up_under_workers_is_one_line_and_exit_1(tmp_path, small_disk):
    # Both workers write to the one file: each may hit the full disk, yet the run says it once.
    log = small_disk / "s.log"
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "nanonas.study", *TINY, "--epochs", "3", "--val-fraction",
           "0.5", "--n-trials", "4", "--workers", "2", "--storage", str(log),
           "--study-name", "s"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, "no trial started"
            with contextlib.suppress(KeyError, ValueError, OSError):
                study = optuna.load_study(study_name="s", storage=open_storage(str(log)))
                if any(records.arch(t) for t in study.get_trials(deepcopy=False)):
                    break
            time.sleep(0.2)
        fill(small_disk)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 1, err
    lines = [s for s in err.splitlines() if not s.startswith(("[I ", "trial "))]  # progress
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("nanonas: error: worker ") and line.count(f"disk full: {log} (") == 1
    # every trial the line names as left RUNNING is; the others are finished or failed
    (small_disk / "filler").unlink()
    trials = optuna.load_study(study_name="s", storage=open_storage(str(log))).trials
    for t in trials:
        assert (f"trial {t.number} is left RUNNING" in line) == (t.state == TrialState.RUNNING)
