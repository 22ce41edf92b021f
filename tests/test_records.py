"""nanonas.records: the trial record's schema round-trips through a real storage, and the read
helpers say what the rest of nanonas needs to know of a trial."""

from __future__ import annotations

import math

import optuna
import pytest

from nanonas import records
from nanonas.space import Architecture

ARCH = Architecture.parse("w8:conv3x3,skip,sep_conv3x3,zero/conv3x3,maxpool3x3,skip,zero")


def _frozen(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return study.get_trials(deepcopy=False)[number]


def test_every_key_round_trips_through_sqlite(tmp_path):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(storage=storage, study_name="r")
    trial = study.ask()
    records.write_candidate(
        trial, arch=ARCH, params=1234, flops=56789, worker="host:1", run="run:x", seed=7
    )
    records.write_curve(trial, [0.25, 0.5])
    records.write_training(trial, seconds=1.23456, device="cpu")
    records.write_failure(trial, "loss became nan")
    records.write_pruned(trial, "below the median")
    records.write_infeasible(trial, "over budget")
    records.write_alive(trial, 1796000000.5)
    original = study.ask()
    records.write_curve(original, [0.75])
    records.write_training(original, seconds=2.0, device="cuda:0")
    study.tell(original, 0.75)
    records.write_reuse(trial, _frozen(study, 1))
    study.tell(trial, 0.75)

    loaded = optuna.load_study(study_name="r", storage=storage)
    record = records.read(loaded.trials[0])
    assert record == records.TrialRecord(
        number=0,
        state="COMPLETE",
        arch=str(ARCH),
        canonical=str(ARCH.canonical()),
        params=1234,
        flops=56789,
        worker="host:1",
        run="run:x",
        seed=7,
        val_acc=(0.75,),  # the reused result replaced its own curve
        train_seconds=0.0,
        device="cuda:0",
        fail_reason="loss became nan",
        prune_reason="below the median",
        infeasible="over budget",
        reused_from=1,
        alive=1796000000.5,
    )
    assert (
        records.alive(loaded.trials[0]) == 1796000000.5 and records.alive(_frozen(study, 1)) is None
    )
    # every schema key is a field of the record, and nothing else is
    fields = set(records.TrialRecord.__dataclass_fields__) - {"number", "state"}
    assert fields == set(records.TRIAL_KEYS)
    assert set(loaded.trials[0].user_attrs) == set(records.TRIAL_KEYS)
    assert records.architecture(loaded.trials[0]) == ARCH


def test_a_value_of_the_wrong_type_is_refused():
    trial = optuna.create_study().ask()
    with pytest.raises(TypeError, match="'params'"):
        records.write_candidate(trial, arch=ARCH, params=1.5, flops=1, worker="w", run="r", seed=0)
    with pytest.raises(TypeError, match="'seed'"):
        records.write_candidate(trial, arch=ARCH, params=1, flops=1, worker="w", run="r", seed=True)


def test_read_helpers_on_an_untouched_trial():
    study = optuna.create_study()
    study.enqueue_trial({})
    study.tell(study.ask(), 1.0)
    trial = study.trials[0]
    assert records.arch(trial) is None and records.curve(trial) == []
    assert records.canonical(trial) is None
    assert records.last_acc(trial) is None and not records.trained(trial)
    assert records.size(trial, "params") == math.inf and records.sizes(trial) == {}
    assert records.reasons(trial) == [] and records.reused_from(trial) is None
    with pytest.raises(ValueError, match="no architecture"):
        records.architecture(trial)


def test_reasons_and_trained():
    study = optuna.create_study()
    trial = study.ask()
    records.write_curve(trial, [0.1, 0.2])
    study.tell(trial, 0.2)
    assert records.trained(study.trials[0]) and records.last_acc(study.trials[0]) == 0.2
    dup = study.ask()
    records.write_reuse(dup, study.trials[0])
    records.write_pruned(dup, "same network as trial 0, which was pruned")
    study.tell(dup, state=optuna.trial.TrialState.PRUNED)
    assert not records.trained(study.trials[1])
    assert records.reasons(study.trials[1]) == [
        "same network as trial 0, which was pruned",
        "result of trial 0, same network",
    ]


def test_the_study_record_is_written_once_and_runs_have_keys_of_their_own():
    study = optuna.create_study()
    first = dict(
        recipe={"epochs": 1}, config={"a": 1}, space={"version": "v1"}, data={}, versions={}
    )
    records.write_creation(study, **first)
    records.write_creation(study, **(first | {"recipe": {"epochs": 9}, "config": {"a": 2}}))
    assert records.recipe(study.user_attrs) == {"epochs": 1}
    assert records.study_config(study.user_attrs) == {"a": 1}
    assert records.study_space(study.user_attrs) == {"version": "v1"}
    a = records.add_run(study, started="2026-01-01T00:00:00Z", host="h", pid=1, entry={"x": 1})
    b = records.add_run(study, started="2026-01-01T00:00:00Z", host="h", pid=2, entry={"x": 2})
    assert a != b and list(records.runs(study.user_attrs)) == [a, b]
    assert records.runs(study.user_attrs)[b] == {
        "started": "2026-01-01T00:00:00Z",
        "host": "h",
        "pid": 2,
        "x": 2,
    }


def test_values_are_accuracy_then_the_size_objectives():
    sizes = {"params": 10, "flops": 20}
    assert records.values(0.5, sizes, ("accuracy",)) == 0.5
    assert records.values(0.5, sizes, ("accuracy", "flops", "params")) == (0.5, 20.0, 10.0)


def test_each_export_is_an_entry_of_its_own_oldest_first():
    study = optuna.create_study()
    for when, acc in (("2026-01-02T00:00:00.000001Z", 0.5), ("2026-01-01T00:00:00.000001Z", 0.4)):
        records.add_export(
            study,
            when=when,
            trial=3,
            test_acc=acc,
            test_acc_flip=acc + 0.25,
            epochs=30,
            folder="/m",
        )
    entries = records.exports(study.user_attrs)
    assert [e["test_acc"] for e in entries] == [0.4, 0.5]
    assert entries[0] == {
        "trial": 3,
        "test_acc": 0.4,
        "test_acc_flip": 0.65,
        "epochs": 30,
        "folder": "/m",
        "time": "2026-01-01T00:00:00.000001Z",
    }
    assert records.exports({"run:x": {}}) == []


def test_canonical_is_recorded_and_derived_for_trials_recorded_without_it():
    study = optuna.create_study()
    trial = study.ask()
    records.write_candidate(trial, arch=ARCH, params=1, flops=1, worker="w", run="r", seed=0)
    study.tell(trial, 0.5)
    canon = "w8:conv3x3,skip,sep_conv3x3,zero/conv3x3,maxpool3x3,skip,zero"
    assert records.canonical(_frozen(study, 0)) == canon
    older = study.ask()  # written by a nanonas that knew only `arch`
    older.set_user_attr("arch", "w8:zero,conv3x3,skip,sep_conv3x3/conv3x3,zero,maxpool3x3,skip")
    study.tell(older, 0.5)
    assert records.canonical(_frozen(study, 1)) == records.canonical(_frozen(study, 0))
