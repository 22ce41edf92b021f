from __future__ import annotations

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
from conftest import TINY, run_cli

from nanonas import study as study_mod
from nanonas.data import DeviceLoader, load, split
from nanonas.errors import ConfigError
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.samplers import EvolutionSampler
from nanonas.space import SPACE_VERSION, Architecture
from nanonas.study import StudyConfig, config_from_args, nano_nas, run
from nanonas.train import evaluate

ROOT = Path(__file__).resolve().parents[1]
GOOD = Architecture.parse("w8:conv3x3,sep_conv3x3,conv3x3,skip/conv3x3,sep_conv3x3,conv3x3,skip")
# Five different good networks: a duplicate would reuse its original's result, not train.
GOODS = [
    Architecture.from_ops((*GOOD.ops[:7], last), 8)
    for last in ("skip", "conv3x3", "sep_conv3x3", "conv5x5", "dil_conv3x3")
]
WEAK = Architecture.parse("w8:zero,zero,zero,zero/zero,zero,zero,zero")
# As weak, but larger than every good network (at width 24): nothing excuses its accuracy.
WEAK_BIG = Architecture.parse("w24:zero,zero,zero,zero/zero,zero,zero,zero")


def _tiny(tmp_path: Path, **overrides) -> StudyConfig:
    values = dict(
        dataset="synthetic",
        widths=(8,),
        batch_size=64,
        device="cpu",
        epochs=2,
        n_trials=3,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        progress=False,
    )
    return StudyConfig(**(values | overrides))


def test_cli_runs_a_real_study_into_sqlite(tmp_path):
    done = run_cli(
        *TINY,
        "--epochs",
        "2",
        "--n-trials",
        "3",
        "--sampler",
        "nsga2",
        "--storage",
        "sqlite:///s.db",
        "--study-name",
        "cli",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "best trial:" in done.stdout and "architecture" in done.stdout

    study = optuna.load_study(study_name="cli", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert len(study.trials) == 3
    full = load("synthetic")
    for t in study.trials:
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        a = t.user_attrs
        arch = Architecture.parse(a["arch"])
        assert arch.params() == t.params  # the stored string is the sampled architecture
        assert a["params"] == count_params(NanoNet(arch))
        assert a["flops"] == count_flops(arch, image_size=full.image_size)
        assert len(a["val_acc"]) == 2 and all(0 <= v <= 1 for v in a["val_acc"])
        assert t.value == a["val_acc"][-1]
        assert t.intermediate_values == {1: a["val_acc"][0], 2: a["val_acc"][1]}
        assert a["train_seconds"] > 0 and a["device"] == "cpu"
    attrs = study.user_attrs
    assert attrs["space"]["version"] == SPACE_VERSION
    assert attrs["config"]["sampler"] == "nsga2" and attrs["config"]["epochs"] == 2
    assert attrs["versions"]["optuna"] == optuna.__version__


def test_running_again_resumes_and_adds_new_trials(tmp_path):
    args = [*TINY, "--epochs", "1", "--sampler", "random", "--storage", "sqlite:///s.db"]
    assert run_cli(*args, "--n-trials", "2", cwd=tmp_path).returncode == 0
    done = run_cli(*args, "--n-trials", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(
        study_name="nanonas-synthetic-accuracy", storage=f"sqlite:///{tmp_path / 's.db'}"
    )
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # the resumed run does not replay the first run's seeded proposals
    archs = [t.user_attrs["arch"] for t in study.trials]
    assert archs[2:4] != archs[0:2]


def test_config_file_with_flags_over_it(tmp_path):
    config = config_from_args(["--config", str(ROOT / "studies" / "quick.toml"), "--epochs", "5"])
    assert config.dataset == "synthetic" and config.epochs == 5
    default = config_from_args(["--config", str(ROOT / "studies" / "cifar10-nsga2.toml")])
    assert default == StudyConfig()  # the preset writes out the defaults
    bad = tmp_path / "bad.toml"
    bad.write_text('sampler = "nsga2"\nepoch = 3\n')
    with pytest.raises(ConfigError, match="unknown key 'epoch'.*valid: .*epochs"):
        config_from_args(["--config", str(bad)])


def _study_with_queue(config: StudyConfig, archs: list[Architecture]) -> None:
    study = optuna.create_study(
        storage=config.storage,
        study_name=config.name,
        directions=[study_mod.OBJECTIVES[o] for o in config.objectives],
    )
    for arch in archs:
        study.enqueue_trial(arch.params())


@pytest.mark.parametrize("pruner", ["median", "sha"])
def test_single_objective_pruning_stops_a_weak_trial_early(tmp_path, pruner):
    config = _tiny(tmp_path, pruner=pruner, epochs=4, n_trials=6, sampler="random")
    _study_with_queue(config, [*GOODS, WEAK])
    study = run(config)
    weak = study.trials[5]
    assert weak.user_attrs["arch"] == str(WEAK)
    assert weak.state == optuna.trial.TrialState.PRUNED
    epochs_run = len(weak.user_attrs["val_acc"])
    assert epochs_run < config.epochs
    assert sorted(weak.intermediate_values) == list(range(1, epochs_run + 1))
    expected = {"median": "below the median", "sha": "outside the top"}[pruner]
    assert expected in weak.user_attrs["prune_reason"]


def test_a_pareto_study_prunes_a_dominated_trial_early_and_spares_a_small_one(tmp_path):
    config = _tiny(
        tmp_path,
        objectives=("accuracy", "params"),
        widths=(8, 24),
        epochs=4,
        n_trials=7,
        sampler="random",
    )
    _study_with_queue(config, [*GOODS, WEAK, WEAK_BIG])
    study = run(config)
    small, big = study.trials[5], study.trials[6]
    assert big.user_attrs["arch"] == str(WEAK_BIG)
    assert big.state == optuna.trial.TrialState.PRUNED
    assert 2 <= len(big.user_attrs["val_acc"]) < config.epochs  # its partial curve is kept
    assert "below the median" in big.user_attrs["prune_reason"]
    # The weak but smallest network has no smaller peers to lose against: it may be optimal.
    assert small.state == optuna.trial.TrialState.COMPLETE
    front = study_mod.best_trials(study)
    assert small in front and big not in front
    assert "Pareto set" in study_mod._summary(study)


def test_no_pruner_trains_every_trial_to_the_end(tmp_path):
    config = _tiny(tmp_path, pruner="none", epochs=3, n_trials=6)
    _study_with_queue(config, [*GOODS, WEAK])
    study = run(config)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all(len(t.user_attrs["val_acc"]) == 3 for t in study.trials)


def test_two_objectives_give_a_pareto_set(tmp_path, capsys):
    config = _tiny(
        tmp_path, objectives=("accuracy", "params"), n_trials=4, epochs=1, widths=(8, 16)
    )
    study = run(config)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.trials:
        assert t.values == [t.user_attrs["val_acc"][-1], t.user_attrs["params"]]
    front = study_mod.best_trials(study)
    assert front and all(t in study.best_trials for t in front)
    assert "Pareto set" in study_mod._summary(study)


def test_tied_trials_of_a_single_objective_study_give_one_best_trial():
    # Small validation sets make equal accuracies common; a tie is not a Pareto set.
    study = optuna.create_study(direction="maximize")
    for arch, acc in [(GOOD, 0.5), (GOODS[3], 0.75), (WEAK, 0.75)]:
        attrs = {"arch": str(arch), "params": count_params(NanoNet(arch)), "flops": 1e6}
        attrs |= {"val_acc": [acc], "train_seconds": 1.0}
        study.add_trial(optuna.trial.create_trial(value=acc, user_attrs=attrs))
    assert count_params(NanoNet(WEAK)) < count_params(NanoNet(GOODS[3]))
    assert [t.number for t in study_mod.best_trials(study)] == [2]  # the smaller of the tied two
    summary = study_mod._summary(study)
    assert "best trial:" in summary and "Pareto set" not in summary
    assert str(WEAK) in summary and str(GOODS[3]) not in summary


class _CountingTrain:
    """study.train, recording which architectures really trained."""

    def __init__(self, monkeypatch):
        self.archs: list[str] = []
        real = study_mod.train

        def counting(arch, *args, **kwargs):
            self.archs.append(str(arch))
            return real(arch, *args, **kwargs)

        monkeypatch.setattr(study_mod, "train", counting)


def test_an_over_budget_architecture_is_never_trained(tmp_path, monkeypatch):
    trained = _CountingTrain(monkeypatch)
    limit = count_params(NanoNet(GOOD)) - 1  # GOOD is one parameter over, WEAK well within
    config = _tiny(tmp_path, n_trials=2, epochs=1, max_params=limit, sampler="random")
    _study_with_queue(config, [GOOD, WEAK])
    study = run(config)
    over, within = study.trials
    assert trained.archs == [str(WEAK)]
    assert over.state == optuna.trial.TrialState.COMPLETE  # so that the sampler learns from it
    assert over.constraints == {"params": 1.0}  # > 0: infeasible
    assert "over budget (params" in over.user_attrs["infeasible"]
    assert "val_acc" not in over.user_attrs and "train_seconds" not in over.user_attrs
    assert within.constraints["params"] < 0 and len(within.user_attrs["val_acc"]) == 1
    assert study_mod.best_trials(study) == [within]


def test_flops_budget_in_a_pareto_study(tmp_path, monkeypatch):
    trained = _CountingTrain(monkeypatch)
    flops = count_flops(GOOD, image_size=16)
    config = _tiny(
        tmp_path, objectives=("accuracy", "flops"), n_trials=2, epochs=1, max_flops=flops - 1
    )
    _study_with_queue(config, [GOOD, WEAK])
    study = run(config)
    assert trained.archs == [str(WEAK)]
    assert study.trials[0].constraints == {"flops": 1.0}
    assert study.trials[1].values[1] == study.trials[1].user_attrs["flops"]


def test_a_duplicate_architecture_is_not_trained_twice(tmp_path, monkeypatch):
    trained = _CountingTrain(monkeypatch)
    config = _tiny(tmp_path, n_trials=3, epochs=1, pruner="none", sampler="random")
    _study_with_queue(config, [GOOD, WEAK, GOOD])
    study = run(config)
    first, _, again = study.trials
    assert trained.archs == [str(GOOD), str(WEAK)]
    assert again.state == optuna.trial.TrialState.COMPLETE
    assert again.value == first.value and again.user_attrs["reused_from"] == 0
    assert again.user_attrs["val_acc"] == first.user_attrs["val_acc"]
    assert study_mod.best_trials(study) != [again]  # the original stands for both
    assert "1 reused a duplicate's result" in study_mod._summary(study)


def test_a_duplicate_of_a_pruned_trial_is_pruned_without_training(tmp_path, monkeypatch):
    config = _tiny(tmp_path, n_trials=1, epochs=1, pruner="none", sampler="random")
    study = optuna.create_study(
        storage=config.storage, study_name=config.name, direction="maximize"
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            params=GOOD.params(),
            distributions=study_mod.space.distributions((8,)),
            user_attrs={"arch": str(GOOD), "val_acc": [0.2], "device": "cpu"},
        )
    )
    study.enqueue_trial(GOOD.params())
    trained = _CountingTrain(monkeypatch)
    study = run(config)
    assert trained.archs == []
    again = study.trials[1]
    assert again.state == optuna.trial.TrialState.PRUNED
    assert again.user_attrs["prune_reason"] == "same architecture as trial 0, which was pruned"


@pytest.mark.parametrize("sampler", ["cmaes", "evolution"])
def test_a_resumed_study_proposes_what_an_uninterrupted_one_would(tmp_path, sampler):
    def archs(name: str, runs: list[int]) -> list[str]:
        for n in runs:
            config = _tiny(
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


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path):
    study = run(_tiny(tmp_path, lr=1e4, n_trials=2, epochs=1))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "loss became nan" in study.trials[0].user_attrs["fail_reason"]


def test_a_study_with_other_objectives_is_not_resumed(tmp_path):
    run(_tiny(tmp_path, n_trials=1, epochs=1, study_name="s"))
    with pytest.raises(ConfigError, match="pass a new --study-name"):
        run(
            _tiny(tmp_path, n_trials=1, epochs=1, study_name="s", objectives=("accuracy", "params"))
        )


def test_a_study_made_elsewhere_with_other_directions_is_not_resumed(tmp_path):
    config = _tiny(tmp_path, n_trials=1, epochs=1)
    optuna.create_study(storage=config.storage, study_name=config.name, direction="minimize")
    with pytest.raises(ConfigError, match="has objectives directions minimize, not accuracy"):
        run(config)


def test_the_password_of_a_storage_url_is_never_stored():
    config = StudyConfig(storage="postgresql://nas:hunter2@db.example/studies")
    public = study_mod._public_config(config)
    assert "hunter2" not in json.dumps(public)
    assert public["storage"] == "postgresql://nas:***@db.example/studies"


BAD_INPUT = {
    "unknown sampler": (["--sampler", "anneal"], "unknown sampler 'anneal'; valid: nsga2, tpe"),
    "malformed storage": (["--storage", "sqlite:/nowhere.db"], "malformed storage URL"),
    "not a URL": (["--storage", "nanonas.db"], "malformed storage URL 'nanonas.db'"),
    "zero trials": (["--n-trials", "0"], "n-trials must be a positive integer, got 0"),
    "unknown dataset": (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid: cifar10"),
    "unknown objective": (["--objectives", "accuracy,speed"], "unknown objective 'speed'"),
    "accuracy not first": (["--objectives", "params"], "objectives must begin with accuracy"),
    "zero budget": (["--max-params", "0"], "max-params must be a positive integer, got 0"),
    "unknown pruner": (["--pruner", "asha"], "unknown pruner 'asha'; valid: median"),
    "unknown flag": (["--epoch", "3"], "unrecognized arguments: --epoch 3"),
    "not a number": (["--n-trials", "many"], "invalid int value: 'many'"),
    "missing config": (["--config", "nope.toml"], "--config nope.toml: no such file"),
    "cifar10 offline": (
        ["--dataset", "cifar10", "--data-dir", "empty"],
        "cifar10 is not in --data-dir empty and could not be downloaded",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_line_a_nonzero_exit_and_no_study(tmp_path, case):
    args, expected = BAD_INPUT[case]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nanonas: error: ") and expected in lines[0]
    assert not list(tmp_path.glob("*.db")), "a study file was created"
    assert not (tmp_path / "empty").exists(), "a data folder was left behind"


def test_nano_nas_returns_the_trained_best_network(tmp_path):
    model = nano_nas(
        "evolution",
        population_size=2,
        generations=2,
        dataset="synthetic",
        widths=(8,),
        batch_size=64,
        device="cpu",
        epochs=2,
        progress=False,
        storage=f"sqlite:///{tmp_path / 'api.db'}",
    )
    study = model.study
    assert len(study.trials) == 4
    assert isinstance(study.sampler, EvolutionSampler)  # aging evolution, as nanoNAS meant
    best = study_mod.best_trials(study)[0]
    assert str(model.arch) == best.user_attrs["arch"]
    # retrained with its trial's seed, it is the network its trial measured
    _, val = split(load("synthetic"), seed=0)
    assert evaluate(model, DeviceLoader(val, batch_size=100, device="cpu")) == best.value


def test_nano_nas_rejects_unknown_strategies_and_options():
    with pytest.raises(
        ConfigError, match="unknown strategy 'annealing'; valid: nsga2, .*evolution"
    ):
        nano_nas("annealing")
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        nano_nas("evolution", epoch=3)


# The tests' offline proxy must not stand between the test and a server on localhost.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_optuna_dashboard_serves_the_study(tmp_path):
    run(_tiny(tmp_path, n_trials=2, epochs=1, study_name="watched"))
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
