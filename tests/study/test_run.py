"""nanonas.study.run: create or resume a study (refusing a changed recipe), record each process,
run its trials; and optuna-dashboard serving what it wrote."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import torch
from tiny import tiny

from nanonas import data, records
from nanonas.errors import ConfigError
from nanonas.study import open_search, run


@pytest.mark.parametrize("sampler", ["cmaes", "evolution"])
def test_a_resumed_study_proposes_what_an_uninterrupted_one_would(tmp_path, sampler):
    def archs(name: str, runs: list[int]) -> list[str]:
        for n in runs:
            config = tiny(
                tmp_path,
                sampler=sampler,
                study_name=name,
                n_trials=n,
                epochs=1,
                population_size=2,
                widths=(8, 16),
                pruner="none",
            )
            study = run(config)
        return [t.user_attrs["arch"] for t in study.trials]

    assert archs("resumed", [3, 3]) == archs("whole", [6])


def test_a_study_with_other_objectives_is_not_resumed(tmp_path):
    run(tiny(tmp_path, n_trials=1, epochs=1, study_name="s"))
    with pytest.raises(ConfigError, match="pass a new --study-name"):
        run(tiny(tmp_path, n_trials=1, epochs=1, study_name="s", objectives=("accuracy", "params")))


def test_a_study_made_elsewhere_with_other_directions_is_not_resumed(tmp_path):
    config = tiny(tmp_path, n_trials=1, epochs=1)
    optuna.create_study(storage=config.storage, study_name=config.name, direction="minimize")
    with pytest.raises(ConfigError, match="has objectives directions minimize, not accuracy"):
        run(config)


def _dump(config) -> str:
    """Everything the study holds, as text: its attributes and every field of every trial."""
    study = optuna.load_study(study_name=config.name, storage=config.storage)
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "values": t.values,
            "params": t.params,
            "user_attrs": t.user_attrs,
            "system_attrs": t.system_attrs,
            "intermediate_values": t.intermediate_values,
            "start": str(t.datetime_start),
            "complete": str(t.datetime_complete),
        }
        for t in study.trials
    ]
    return json.dumps({"attrs": study.user_attrs, "trials": trials}, sort_keys=True)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"epochs": 2}, "epochs 1 "),
        ({"lr": 0.05}, "lr 0.1 "),
        ({"val_fraction": 0.3}, "val-fraction 0.1 "),
        ({"batch_size": 32, "widths": (8, 16)}, "batch-size 64 "),
        ({"max_params": 5000}, "max-params none "),
    ],
    ids=["epochs", "lr", "val-fraction", "batch-size+widths", "budget"],
)
def test_a_resume_with_another_recipe_is_refused_and_changes_nothing(tmp_path, change, named):
    config = tiny(tmp_path, n_trials=2, epochs=1, sampler="random")
    run(config)
    before = _dump(config)
    database = tmp_path / "s.db"
    file_before = hashlib.sha256(database.read_bytes()).hexdigest()
    with pytest.raises(ConfigError) as refused:
        run(tiny(tmp_path, **({"n_trials": 2, "epochs": 1, "sampler": "random"} | change)))
    message = str(refused.value)
    assert "\n" not in message and named in message and "pass a new --study-name" in message
    for key in change:  # every key that differs is named, not only the first
        assert key.replace("_", "-") in message
    assert _dump(config) == before
    assert hashlib.sha256(database.read_bytes()).hexdigest() == file_before


def test_a_changed_sampler_seed_and_settings_are_accepted_and_recorded_as_runs(tmp_path):
    first = tiny(tmp_path, n_trials=2, epochs=1, sampler="random", seed=0)
    run(first)
    again = tiny(
        tmp_path, n_trials=2, epochs=1, sampler="tpe", seed=5, pruner="none", population_size=4
    )
    study = run(again)
    assert len(study.trials) == 4
    entries = list(records.runs(study.user_attrs).values())
    assert [e["settings"]["sampler"] for e in entries] == ["random", "tpe"]
    assert [e["role"] for e in entries] == ["main", "main"]
    assert all(e["pid"] == os.getpid() and e["host"] == socket.gethostname() for e in entries)
    # The study's config stays the creating run's: the second run added an entry instead.
    assert records.study_config(study.user_attrs)["sampler"] == "random"
    runs_of = [records.run_of(t) for t in study.trials]
    keys = list(records.runs(study.user_attrs))
    assert runs_of == [keys[0], keys[0], keys[1], keys[1]]


def test_a_resume_splits_with_the_studys_seed_whatever_seed_says(tmp_path):
    run(tiny(tmp_path, n_trials=1, epochs=1, seed=3))
    search = open_search(tiny(tmp_path, n_trials=1, epochs=1, seed=11), role="main")
    assert records.recipe(search.study.user_attrs)["split_seed"] == 3
    _, val = data.split(data.load("synthetic"), val_fraction=0.1, seed=3)
    assert torch.equal(search.val_set.labels, val.labels)
    assert torch.equal(search.val_set.images, val.images)


def test_a_study_from_before_recipes_is_checked_against_its_config(tmp_path):
    """nanonas 0.1 kept only the last run's settings in `config`: they stand in for a recipe."""
    config = tiny(tmp_path, n_trials=1, epochs=2)
    study = optuna.create_study(
        storage=config.storage, study_name=config.name, direction="maximize"
    )
    old = config.public() | {"epochs": 3}
    study.set_user_attr("config", old)
    with pytest.raises(ConfigError, match="epochs 3 "):
        run(config)
    study.set_user_attr("config", config.public())
    resumed = run(config)
    made = records.recipe(resumed.user_attrs)
    assert made["epochs"] == 2 and made["split_seed"] == config.seed


def test_open_search_loads_the_data_before_touching_the_storage(tmp_path):
    config = tiny(tmp_path, dataset="imagefolder", data_dir=str(tmp_path / "nothing"))
    with pytest.raises(Exception, match="nothing"):
        open_search(config, role="main")
    assert not (tmp_path / "s.db").exists()


# The tests' offline proxy must not stand between the test and a server on localhost.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_optuna_dashboard_serves_the_study(tmp_path):
    run(tiny(tmp_path, n_trials=2, epochs=1, study_name="watched"))
    port = _free_port()
    dashboard = shutil.which(
        "optuna-dashboard", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    assert dashboard, "optuna-dashboard (a nanonas dependency) is not installed"
    server = subprocess.Popen(
        [
            dashboard,
            f"sqlite:///{tmp_path / 's.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with _DIRECT.open(f"http://127.0.0.1:{port}/api/studies") as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        [entry] = [s for s in studies if s["study_name"] == "watched"]
        with _DIRECT.open(f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}?after=0") as r:
            detail = json.load(r)
        trials = detail["trials"]
        assert len(trials) == 2
        keys = {a["key"] for a in trials[0]["user_attrs"]}
        assert {"arch", "params", "flops", "val_acc", "train_seconds", "device"} <= keys
    finally:
        server.terminate()
        server.wait(timeout=10)
