"""--launcher ray (nanonas.study.ray_launch) on a real local Ray cluster and the real PostgreSQL.

    python -m pytest -q tests/test_ray.py --durations=0

The module starts one Ray cluster with 2 CPUs in this process (ray.init); each test runs
`python -m nanonas.study --launcher ray --ray-address <that cluster>` as a user would, so the
driver is a process of its own, as on a real cluster. Without Ray or PostgreSQL the tests skip;
in CI (CI=true) a missing server fails instead (conftest.server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import OFFLINE, run_cli, server
from optuna.trial import TrialState

from nanonas import records
from nanonas.errors import ConfigError
from nanonas.storage import open_storage
from nanonas.study import StudyConfig, config_from_args

# Tiny trials: synthetic data, width 4, one CPU thread per task.
SMALL = ["--dataset", "synthetic", "--widths", "4", "--batch-size", "64", "--device", "cpu"]
SMALL += ["--sampler", "random", "--launcher", "ray", "--ray-cpus", "1"]


@pytest.fixture(scope="module")
def cluster():
    """The GCS address of a local Ray cluster of 2 CPUs, shut down after the module."""
    ray = pytest.importorskip("ray")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,  # the tasks pass little: a FrozenTrial at a time
        logging_level=logging.ERROR,
    )
    for s, handler in handlers.items():
        signal.signal(s, handler)  # pytest's Ctrl-C, not Ray's
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture
def study(tmp_path):
    """A fresh study name on the PostgreSQL server, deleted afterwards."""
    url, name = server("postgresql"), f"test-ray-{uuid.uuid4().hex[:10]}"
    yield url, name
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=open_storage(url))


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = os.environ | OFFLINE | {"XDG_CACHE_HOME": str(cwd / "cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "nanonas.study", *SMALL, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _mid_trial(url: str, name: str, *, timeout: float) -> optuna.trial.FrozenTrial:
    """The first RUNNING trial that has finished an epoch (and has more to go)."""
    storage = open_storage(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(
                deepcopy=False, states=(TrialState.RUNNING,)
            )
        except KeyError:  # not created yet
            trials = []
        for t in trials:
            if records.curve(t):
                return t
        time.sleep(0.1)
    raise AssertionError(f"no trial was mid-training within {timeout} s")


def _trial_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("trial ")]


def test_two_ray_workers_finish_every_trial_with_unique_numbers(tmp_path, cluster, study):
    url, name = study
    done = run_cli(
        *SMALL, "--ray-address", cluster, "--storage", url, "--study-name", name,
        "--epochs", "1", "--workers", "2", "--n-trials", "6", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "best trial:" in done.stdout
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # The driver printed one line per finished trial, as a local run does, and nothing else
    # of the tasks'.
    lines = _trial_lines(done.stderr)
    assert sorted(int(line.split()[1]) for line in lines) == list(range(6))
    assert all("COMPLETE" in line for line in lines)
    assert "Traceback" not in done.stderr and "(pid=" not in done.stderr, done.stderr
    # Both tasks joined the study (the driver too), each with its run entry.
    roles = sorted(e["role"] for e in records.runs(optuna.load_study(
        study_name=name, storage=open_storage(url)).user_attrs).values())  # fmt: skip
    assert roles == ["ray driver", "ray worker 0", "ray worker 1"]


def test_a_killed_ray_task_is_retried_and_the_study_reaches_its_count(tmp_path, cluster, study):
    url, name = study
    proc = _start(
        "--ray-address", cluster, "--storage", url, "--study-name", name, "--epochs", "3",
        "--pruner", "none", "--workers", "2", "--n-trials", "4", "--heartbeat-interval", "2",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        victim = _mid_trial(url, name, timeout=120)
        os.kill(int(records.read(victim).worker.rsplit(":", 1)[1]), signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "was lost and Ray started it again" in err  # the retried task's one line
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.number == victim.number
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.params == victim.params and retry.state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4  # the count was reached
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sorted(int(line.split()[1]) for line in _trial_lines(err)) == sorted(
        t.number for t in trials if t.state == TrialState.COMPLETE
    )


def test_ctrl_c_on_the_driver_cancels_the_tasks_and_leaves_no_trial_running(
    tmp_path, cluster, study
):
    url, name = study
    proc = _start(
        "--ray-address", cluster, "--storage", url, "--study-name", name, "--epochs", "6",
        "--pruner", "none", "--workers", "2", "--n-trials", "8", cwd=tmp_path,
    )  # fmt: skip
    try:
        _mid_trial(url, name, timeout=120)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "nanonas: interrupted (SIGINT); " in err and "finished trials are saved" in err
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(records.reasons(t) == ["interrupted (SIGINT)"] for t in failed)
    for t in failed:  # each re-queued with its architecture, for the next run to take first
        (retry,) = [r for r in trials if r.system_attrs.get("failed_trial") == t.number]
        assert retry.state == TrialState.WAITING and retry.params == t.params


def test_an_sqlite_storage_is_refused_in_one_line_and_nothing_written(tmp_path):
    pytest.importorskip("ray")
    done = run_cli(*SMALL, "--storage", "sqlite:///s.db", "--n-trials", "2", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        "nanonas: error: --launcher ray needs a storage every node can reach, not an SQLite "
        "file (sqlite:///s.db); use a postgresql://, mysql:// or redis:// URL"
    )
    assert not list(tmp_path.glob("s.*")), "a study file was written"


def test_a_journal_file_is_refused_too(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(ConfigError) as e:
        config_from_args([*SMALL, "--storage", str(tmp_path / "s.log")])
    assert f"not a journal file ({tmp_path / 's.log'})" in str(e.value)
    assert not list(tmp_path.glob("s.*"))


def test_an_unreachable_ray_address_is_one_line_at_once(tmp_path, study):
    pytest.importorskip("ray")
    url, name = study
    began = time.monotonic()
    done = run_cli(
        *SMALL, "--ray-address", "127.0.0.1:9", "--storage", url, "--study-name", name,
        "--n-trials", "2", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("nanonas: error: --ray-address 127.0.0.1:9: no Ray cluster answers")
    assert time.monotonic() - began < 30  # Python's start and imports, then a refused connect
    with pytest.raises(KeyError):  # nothing was written
        optuna.load_study(study_name=name, storage=open_storage(url))


def test_launcher_ray_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(ConfigError) as e:
        StudyConfig(launcher="ray", storage="postgresql://u@db-host/nas")
    assert str(e.value) == (
        "--launcher ray needs Ray, which is not installed: pip install 'nanonas[ray]'"
    )


def test_an_unknown_launcher_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"^unknown launcher 'slurm'; valid: local, ray$"):
        config_from_args(["--launcher", "slurm"])


def test_devices_are_refused_with_ray_which_places_the_gpus():
    pytest.importorskip("ray")
    with pytest.raises(ConfigError, match="--devices is for --launcher local"):
        StudyConfig(launcher="ray", storage="postgresql://u@db-host/nas", devices=(0, 1))


def test_the_ray_flags_parse_into_the_config():
    pytest.importorskip("ray")
    config = config_from_args(
        ["--launcher", "ray", "--ray-address", "10.0.0.1:6379", "--ray-gpus", "0.5",
         "--ray-cpus", "4", "--storage", "postgresql://u@db-host/nas"]
    )  # fmt: skip
    assert (config.launcher, config.ray_address) == ("ray", "10.0.0.1:6379")
    assert (config.ray_gpus, config.ray_cpus) == (0.5, 4.0)
    with pytest.raises(ConfigError, match="ray-gpus must be a finite number >= 0, got -1.0"):
        config_from_args(["--ray-gpus", "-1"])


def test_the_tally_grants_trials_up_to_the_count_and_frees_a_lost_tasks_grant():
    pytest.importorskip("ray")
    from nanonas.study.ray_launch import _Tally

    def finished(number: int) -> optuna.trial.FrozenTrial:
        return optuna.trial.FrozenTrial(
            number=number, state=TrialState.COMPLETE, value=0.5, datetime_start=None,
            datetime_complete=None, params={}, distributions={}, user_attrs={},
            system_attrs={}, intermediate_values={}, trial_id=number,
        )  # fmt: skip

    tally = _Tally(3)
    assert tally.hello(0, "run:a") == 0 and tally.hello(1, "run:b") == 0
    assert tally.claim(0) and tally.claim(0)  # one grant per task, asked again after a fault
    assert tally.claim(1)
    tally.finish(0, finished(0))
    assert tally.claim(0)  # 1 finished + 2 in flight: the last one
    assert not tally.claim(2) and tally.hello(1, "run:c") == 1  # task 1 lost, then retried
    assert tally.claim(1)  # its predecessor's grant was freed for it
    tally.finish(1, finished(1))
    tally.finish(1, finished(1))  # told twice (a fault's settle): counted once
    assert not tally.claim(1)  # 2 finished + task 0's trial in flight
    tally.finish(0, finished(2))
    assert [t.number for t in tally.since(0)] == [0, 1, 2] and tally.since(3) == []
    assert tally.run_keys() == ["run:a", "run:b", "run:c"] and not tally.claim(2)


def test_the_driver_fails_and_requeues_only_its_own_tasks_trials_left_running(study):
    pytest.importorskip("ray")
    from nanonas.space import sample
    from nanonas.study.ray_launch import _fail_left_running

    url, name = study
    opened = optuna.create_study(storage=open_storage(url), study_name=name, direction="maximize")
    for run in ("run:ours", "run:another"):
        trial = opened.ask()
        arch = sample(trial, widths=(4,))
        records.write_candidate(
            trial, arch=arch, params=1, flops=1, worker="host:1", run=run, seed=0
        )
    said = _fail_left_running(
        StudyConfig(storage=url, study_name=name), opened, {"run:ours"}, "interrupted (SIGINT)"
    )
    assert said == ["trial 0 failed (interrupted (SIGINT)) and was queued again as trial 2"]
    ours, another, retry = opened.trials
    assert ours.state == TrialState.FAIL and records.reasons(ours) == ["interrupted (SIGINT)"]
    assert another.state == TrialState.RUNNING  # another run's: its own workers settle it
    assert retry.state == TrialState.WAITING and retry.params == ours.params
