"""nanonas.study.settle: what becomes of the trial in flight when a run is interrupted, with the
real CLI in a subprocess (storage faults are tested end to end in test_faults.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from conftest import OFFLINE, TINY, run_cli
from optuna.trial import TrialState

from nanonas import records

# One short epoch per trial: a quarter of the synthetic set trains, the rest scores.
ARGS = [*TINY, "--epochs", "1", "--val-fraction", "0.5", "--sampler", "random"]
ARGS += ["--storage", "sqlite:///s.db", "--study-name", "s"]


def _trials(cwd: Path) -> list[optuna.trial.FrozenTrial]:
    try:
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{cwd / 's.db'}")
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


def _interrupt_mid_trial(cwd: Path, signum: int, *args: str) -> subprocess.CompletedProcess:
    """Start a run, send `signum` once its first trial is training, wait for it to end."""
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(cwd / "cache")}
    cmd = [sys.executable, "-m", "nanonas.study", *ARGS, *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(t.state == TrialState.RUNNING and records.arch(t) for t in _trials(cwd)):
            assert time.monotonic() < deadline, "no trial started within 60 s"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(), err.decode())


def test_sigint_mid_trial_fails_it_with_its_reason_and_a_resume_runs_it_first(tmp_path):
    done = _interrupt_mid_trial(tmp_path, signal.SIGINT, "--n-trials", "3")
    assert done.returncode == 130, done.stderr
    # One line, nanonas's: no Optuna warning, no traceback (Optuna's "[I ..." info lines,
    # such as the study's creation, stay).
    (line,) = [s for s in done.stderr.splitlines() if not s.startswith("[I ")]
    assert line.startswith("nanonas: interrupted (SIGINT); trial 0 failed"), line
    assert "queued again as trial 1" in line and "run the same command to resume" in line
    first, retry = _trials(tmp_path)
    assert first.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert records.reasons(first) == ["interrupted (SIGINT)"]
    assert retry.params == first.params

    # The resume adds --n-trials trials, and the interrupted architecture is the first of them.
    again = run_cli(*ARGS, "--n-trials", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert records.arch(trials[1]) == records.arch(first)
