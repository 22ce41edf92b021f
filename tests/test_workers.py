"""Shared studies with real worker processes on the real servers: --workers, SIGKILL, SIGTERM,
a database that drops every connection mid-study, and a database that is not there.

Each test runs `python -m nanonas.study` as a user would. Without the servers the tests skip;
in CI (CI=true) they fail instead (conftest.server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from conftest import OFFLINE, TINY, run_cli, server
from optuna.trial import TrialState

from nanonas import records
from nanonas.storage import check_url, open_storage

KEYS = {"arch", "params", "flops", "val_acc", "train_seconds", "device", "worker"}


def _name() -> str:
    return f"test-workers-{uuid.uuid4().hex[:10]}"


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(cwd / "cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "nanonas.study", *TINY, "--no-progress", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _running_mid_trial(url: str, name: str):
    """A callable: the first RUNNING trial that has finished an epoch, or None."""
    storage = open_storage(url)  # one for all the polls: a new one each time leaks connections

    def check():
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # not created yet
            return None
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("val_acc"):
                return t
        return None

    return check


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "redis"])
def test_four_workers_finish_exactly_their_trials(tmp_path, kind):
    url, name = server(kind), _name()
    args = ["--epochs", "1", "--sampler", "random", "--storage", url, "--study-name", name]
    done = run_cli(*TINY, *args, "--workers", "4", "--n-trials", "40", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "study" in done.stdout and "best trial:" in done.stdout
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(40))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(set(t.user_attrs) >= KEYS for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 4  # four processes shared the work
    optuna.delete_study(study_name=name, storage=open_storage(url))


def test_a_killed_worker_loses_only_its_trial_which_is_retried(tmp_path):
    url, name = server("postgresql"), _name()
    proc = _start(
        "--epochs", "6", "--sampler", "random", "--pruner", "none", "--storage", url,
        "--study-name", name, "--workers", "2", "--n-trials", "6", "--heartbeat-interval", "2",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        victim = _wait_for(_running_mid_trial(url, name), timeout=120, what="a running trial")
        pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "worker" in err and "was killed (SIGKILL)" in err
    assert "leaked" not in err, err  # no resource warnings at the end
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [victim.number]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].params == victim.params
    assert retried[0].state == TrialState.COMPLETE
    # The study still reached its target: 6 finished trials, the retry among them.
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    optuna.delete_study(study_name=name, storage=open_storage(url))


def test_a_worker_stopped_by_sigterm_is_restarted_and_the_run_reaches_its_count(tmp_path):
    # A journal file needs no server; one short epoch per trial (a quarter of the data trains).
    log = tmp_path / "s.log"
    args = ["--epochs", "1", "--val-fraction", "0.5", "--sampler", "random", "--pruner", "none"]
    proc = _start(*args, "--storage", str(log), "--study-name", "w", "--workers", "2",
                  "--n-trials", "4", cwd=tmp_path)  # fmt: skip
    try:
        storage = open_storage(str(log))

        def training():
            if not log.exists():
                return None
            try:
                study = optuna.load_study(study_name="w", storage=storage)
            except KeyError:
                return None
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            # The worker is written just after the architecture (records.write_candidate).
            return next((t for t in running if records.read(t).worker), None)

        victim = _wait_for(training, timeout=60, what="a running trial")
        os.kill(int(records.read(victim).worker.rsplit(":", 1)[1]), signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "was stopped (SIGTERM), its trial re-queued" in err and "restarting it now" in err
    assert "leaked" not in err and "Traceback" not in err, err  # no resource or other warnings
    trials = optuna.load_study(study_name="w", storage=open_storage(str(log))).trials
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.number == victim.number
    assert records.reasons(failed) == ["interrupted (SIGTERM)"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.params == victim.params and retry.state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4  # the count was reached
    assert len(trials) == 5


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_cleanly_and_the_study_resumes(tmp_path, workers):
    url, name = server("postgresql"), _name()
    args = ["--epochs", "6", "--sampler", "random", "--storage", url, "--study-name", name]
    proc = _start(*args, "--workers", workers, "--n-trials", "8", cwd=tmp_path)
    try:
        _wait_for(_running_mid_trial(url, name), timeout=120, what="a running trial")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "nanonas: interrupted (SIGTERM); " in err and "finished trials are saved" in err
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert TrialState.RUNNING not in states and TrialState.FAIL in states
    waiting = [t.number for t in study.trials if t.state == TrialState.WAITING]
    assert waiting  # the interrupted trials, re-queued
    # The same command goes on with the study (with its recipe: --epochs stays), and its one
    # trial is the first re-queued one, not a new one.
    done = run_cli(*TINY, *args, "--n-trials", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    resumed = optuna.load_study(study_name=name, storage=open_storage(url))
    assert len(resumed.trials) == len(states)
    assert resumed.trials[waiting[0]].state in (TrialState.COMPLETE, TrialState.PRUNED)
    optuna.delete_study(study_name=name, storage=open_storage(url))


def test_workers_go_on_when_the_database_drops_every_connection(tmp_path):
    url, name = server("postgresql"), _name()
    args = ["--epochs", "4", "--sampler", "random", "--pruner", "none", "--storage", url]
    proc = _start(*args, "--study-name", name, "--workers", "2", "--n-trials", "6", cwd=tmp_path)
    try:
        _wait_for(_running_mid_trial(url, name), timeout=120, what="a running trial")
        # What a server restart does to its clients: every connection to the database is cut.
        admin = sqlalchemy.create_engine(check_url(url), poolclass=sqlalchemy.pool.NullPool)
        with admin.connect() as c:
            killed = c.execute(
                sqlalchemy.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        admin.dispose()
        assert killed >= 2  # both workers' connections, at least
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    optuna.delete_study(study_name=name, storage=open_storage(url))


def test_an_unreachable_database_is_one_line_within_10_seconds(tmp_path):
    start = time.monotonic()
    done = run_cli(*TINY, "--storage", "postgresql://nas@127.0.0.1:1/studies", cwd=tmp_path)
    assert time.monotonic() - start < 10
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanonas: error: "), done.stderr


def test_workers_must_not_outnumber_trials(tmp_path):
    done = run_cli(*TINY, "--workers", "3", "--n-trials", "2", cwd=tmp_path)
    assert done.returncode == 2
    assert "workers (3) must not exceed n-trials (2)" in done.stderr


def test_workers_whose_share_is_smaller_than_their_number_finish_it(tmp_path):
    # 3 trials for 2 workers: one worker's share (1) is below the number of workers, which a
    # worker must not mistake for a config error; a journal file needs no server.
    args = ["--epochs", "1", "--sampler", "random", "--storage", "s.log", "--study-name", "q"]
    done = run_cli(*TINY, *args, "--workers", "2", "--n-trials", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="q", storage=open_storage(str(tmp_path / "s.log")))
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    roles = sorted(e["role"] for e in records.runs(study.user_attrs).values())
    assert roles == ["supervisor", "worker 0", "worker 1"]  # one run entry per process


def test_a_worker_that_keeps_dying_ends_the_run_in_one_line_past_max_restarts():
    from dying_worker import die_of_sigterm

    from nanonas.workers import WorkersGaveUp, supervise

    start = time.monotonic()
    with pytest.raises(WorkersGaveUp) as e:
        supervise(die_of_sigterm, (), [2, 1], restart_delay=0, max_restarts=2)
    assert time.monotonic() - start < 30
    message = str(e.value)
    assert "\n" not in message and "died again (SIGTERM) after 2 restarts" in message
    assert "0 of 3 trials finished" in message and "run the same command" in message


def test_workers_that_fail_alike_end_the_run_in_the_first_ones_line_and_its_exit_code():
    from dying_worker import fail_with_a_line

    from nanonas.workers import WorkerFailed, supervise

    with pytest.raises(WorkerFailed) as e:
        supervise(fail_with_a_line, (), [2, 2, 2], restart_delay=0)
    message = str(e.value)
    assert e.value.EXIT_CODE == 1 and "\n" not in message
    # one line for the run: the first failing worker's error once, and every trial concerned
    assert message.startswith("worker ") and message.count("disk full: /data/s.log") == 1
    first = int(message.split()[1].rstrip(":"))
    assert f"worker {first}: disk full: /data/s.log (0 B free); trial {first} is" in message
    for i in range(3):
        assert f"worker {i}: " in message and f"trial {i} is left RUNNING" in message
