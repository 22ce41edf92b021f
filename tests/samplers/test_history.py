"""nanonas.samplers.history: what every nanonas sampler promises, checked on each of them.

A proposal is a pure function of the seed, the trial's number and the stored trials (so a resume
in a new process proposes what one run would), no architecture is proposed twice, finished trials
rank COMPLETE > PRUNED > infeasible > FAIL, and nothing outside the given space is sampled.
"""

from __future__ import annotations

import random

import optuna
import pytest
from landscape import (
    CONCENTRATED,
    RANDOM_MEAN,
    SAMPLERS,
    arch_of,
    hits,
    score,
    score_and_size,
    sqlite,
)
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from nanonas import space
from nanonas.samplers import (
    CatCmaSampler,
    EvolutionSampler,
    HybridSampler,
    LocalSearchSampler,
    SurrogateSampler,
)

CLASSES = {
    "cmaes": CatCmaSampler,
    "evolution": EvolutionSampler,
    "local": LocalSearchSampler,
    "surrogate": SurrogateSampler,
    "hybrid": HybridSampler,
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_no_architecture_is_proposed_twice(name):
    study = optuna.create_study(sampler=SAMPLERS[name](0), direction="maximize")
    study.optimize(score, n_trials=120)
    assert len({arch_of(t) for t in study.trials}) == 120


@pytest.mark.parametrize(
    ("name", "directions"),
    [
        ("cmaes", ["maximize"]),
        ("cmaes", ["maximize", "minimize"]),  # COMO-CatCMA: another replay
        ("evolution", ["maximize"]),  # (with several objectives only the parent choice differs)
        ("local", ["maximize"]),
        ("surrogate", ["maximize"]),
        ("surrogate", ["maximize", "minimize"]),  # ParEGO: the weights come from the RNG too
    ],
)
def test_resume_in_a_new_process_proposes_what_one_run_would(name, directions, tmp_path):
    objective = score if len(directions) == 1 else score_and_size
    path = tmp_path / "s.db"
    one_go = optuna.create_study(
        storage=sqlite(path), study_name="a", sampler=SAMPLERS[name](3), directions=directions
    )
    one_go.optimize(objective, n_trials=30)

    first = optuna.create_study(
        storage=sqlite(path), study_name="b", sampler=SAMPLERS[name](3), directions=directions
    )
    first.optimize(objective, n_trials=20)
    # A new process: a new storage object and a new sampler; only the database is shared.
    resumed = optuna.load_study(study_name="b", storage=sqlite(path), sampler=SAMPLERS[name](3))
    resumed.optimize(objective, n_trials=10)

    expected = [t.params for t in one_go.trials[20:30]]
    assert [t.params for t in resumed.trials[20:30]] == expected
    assert len({arch_of(t) for t in one_go.trials}) == 30  # and no architecture came twice


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("multi", [False, True])
def test_pruned_failed_and_infeasible_trials_do_not_break_the_search(name, multi):
    complete: list[float] = []

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        arch = space.sample(trial)
        value = hits(trial.params) + 0.1 * random.Random(trial.number).gauss(0, 1)
        if trial.number % 10 == 3:  # a diverged run or a killed worker, whatever the arch
            raise RuntimeError("diverged")
        if arch.ops.count("conv5x5") >= 3:  # over budget: never trained, accuracy 0
            trial.set_constraint("params", arch.ops.count("conv5x5") - 2)
            value = 0.0
        elif len(complete) >= 10 and value < sorted(complete)[len(complete) // 2]:
            # pruned below the median, as nanonas prunes: the curve in val_acc (and reported)
            trial.set_user_attr("val_acc", [value / 20, value / 10])
            if not multi:
                trial.report(value / 10, 1)
            raise optuna.TrialPruned()
        else:
            complete.append(value)
        return (value, 1.0) if multi else value

    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(sampler=SAMPLERS[name](0), directions=directions)
    study.optimize(objective, n_trials=150, catch=(RuntimeError,))
    states = [t.state for t in study.trials]
    # Local search climbs from its best trial, so few of its trials fall below the median.
    assert states.count(TrialState.FAIL) == 15 and states.count(TrialState.PRUNED) > 2
    assert any(t.constraints for t in study.trials)
    if multi:  # several CMA kernels share the budget: asked for 5 standard deviations
        assert study.best_trials and all(not t.constraints for t in study.best_trials)
    last = [hits(t.params) for t in study.trials[-30:]]
    assert sum(last) / len(last) > (RANDOM_MEAN + 5 * 0.18 if multi else CONCENTRATED)


def _add(study: optuna.Study, state: TrialState, *, value=None, acc=None, violation=None) -> None:
    # Trial k has op k in blocks 0-2: any two trials differ in three parameters.
    op = space.OP_NAMES[len(study.trials)]
    params = {"width": 32} | {f"block_{i}": op if i < 3 else "skip" for i in range(8)}
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            params=params,
            distributions=space.distributions(),
            value=value,
            user_attrs={} if acc is None else {"val_acc": [acc / 2, acc]},
            system_attrs={} if violation is None else {"constraints:params": violation},
        )
    )


def _parent(study: optuna.Study) -> int:
    """The number of the trial that EvolutionSampler mutates when it samples them all."""
    n = len(study.trials)
    evolution = EvolutionSampler(
        search_space=space.distributions(), seed=0, population_size=n, sample_size=n
    )
    trial = optuna.trial.create_trial(state=TrialState.RUNNING)
    trial.number = n
    child = evolution.sample_relative(study, trial, space.distributions())
    (parent,) = [t for t in study.trials if sum(t.params[k] != child[k] for k in child) == 1]
    return parent.number


def test_ranking_complete_then_pruned_by_accuracy_then_infeasible_by_violation_then_failed():
    study = optuna.create_study(direction="maximize")
    _add(study, TrialState.FAIL)
    _add(study, TrialState.COMPLETE, value=0.0, violation=5.0)
    assert _parent(study) == 1
    _add(study, TrialState.COMPLETE, value=0.0, violation=2.0)  # infeasible: least violation
    assert _parent(study) == 2
    _add(study, TrialState.PRUNED, acc=0.5)
    _add(study, TrialState.PRUNED, acc=0.7)  # pruned: the best last accuracy
    _add(study, TrialState.PRUNED, acc=0.6)
    assert _parent(study) == 4
    _add(study, TrialState.COMPLETE, value=0.1)  # COMPLETE: above every pruned one
    _add(study, TrialState.COMPLETE, value=0.3)
    _add(study, TrialState.COMPLETE, value=0.2)
    assert _parent(study) == 7


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (CatCmaSampler, {"search_space": {}}, "non-empty dict"),
        (CatCmaSampler, {"search_space": {"lr": FloatDistribution(0.1, 1)}}, "FloatDistribution"),
        (CatCmaSampler, {"population_size": 1}, "population_size must be an integer >= 2"),
        (CatCmaSampler, {"population_size": 2.5}, "got 2.5"),
        (CatCmaSampler, {"seed": "0"}, "seed must be an integer, got '0'"),
        (EvolutionSampler, {"search_space": None}, "non-empty dict"),
        (EvolutionSampler, {"population_size": 1}, "population_size must be an integer >= 2"),
        (EvolutionSampler, {"sample_size": 0}, "sample_size must be an integer >= 1"),
        (EvolutionSampler, {"sample_size": 21}, r"at most population_size \(20\), got 21"),
        (EvolutionSampler, {"population_size": 3, "sample_size": 4}, r"\(3\), got 4"),
        (EvolutionSampler, {"seed": 1.0}, "seed must be an integer"),
        (LocalSearchSampler, {"n_startup": 0}, "n_startup must be an integer >= 1"),
        (LocalSearchSampler, {"canonical": "zeros last"}, "canonical must be a function"),
        (LocalSearchSampler, {"guide": -1}, r"guide must be a number in \[0, inf\], got -1"),
        (LocalSearchSampler, {"explore": 1.5}, r"explore must be a number in \[0, 1.0\]"),
        (LocalSearchSampler, {"gamma": 0}, r"gamma must be a number in \(0, 1.0\], got 0"),
        (LocalSearchSampler, {"explore": True}, "got True"),
        (SurrogateSampler, {"n_startup": 1}, "n_startup must be an integer >= 2"),
        (SurrogateSampler, {"seed": None}, "seed must be an integer"),
        (HybridSampler, {"handoff": -1}, "handoff must be an integer >= 0, got -1"),
        (HybridSampler, {"every": 0}, "every must be an integer >= 1, got 0"),
        (HybridSampler, {"search_space": {"lr": FloatDistribution(0.1, 1)}}, "HybridSampler"),
        (HybridSampler, {"search_space": {}}, "non-empty dict"),
        (HybridSampler, {"canonical": 3}, "canonical must be a function"),
    ],
)
def test_constructor_names_the_bad_value(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**({"search_space": space.distributions()} | kwargs))


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_parameter_outside_the_space_is_refused_not_sampled_at_random(name):
    def objective(trial: optuna.Trial) -> float:
        space.sample(trial)
        return trial.suggest_float("lr", 0.01, 0.1)

    study = optuna.create_study(sampler=SAMPLERS[name](0))
    with pytest.raises(ValueError, match="'lr'.*only the categorical space it was given"):
        study.optimize(objective, n_trials=1)


@pytest.mark.parametrize("name", SAMPLERS)
def test_single_choice_width_and_parallel_threads(name):
    """A study with one width (as the quick preset) and n_jobs=2 still samples every block."""
    sampler_cls = CLASSES[name]
    sampler = sampler_cls(search_space=space.distributions((8,)), seed=0)
    assert sampler.infer_relative_search_space(None, None) == space.distributions((8,))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: hits(space.sample(t, widths=(8,)).params()), n_trials=40, n_jobs=2)
    assert all(t.params["width"] == 8 and len(t.params) == 9 for t in study.trials)
    assert isinstance(study.trials[0].distributions["width"], CategoricalDistribution)


def test_retried_and_waiting_trials_are_read_as_optuna_writes_them():
    """history.py reads two of Optuna's system attrs directly (its comment says why): a
    retried FAIL is left to its retry, and a queued trial's architecture counts as taken."""
    from nanonas.samplers.history import Space

    study = optuna.create_study()
    failed = {"width": 32} | {f"block_{i}": "conv3x3" for i in range(8)}
    queued = failed | {"block_0": "skip"}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL, params=failed, distributions=space.distributions()
        )
    )
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    retry = retry or optuna.storages.RetryFailedTrialCallback
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        retry()(study, study.trials[0])  # Optuna's own retry: a WAITING copy of trial 0
    study.enqueue_trial(queued)
    scanned = Space(space.distributions(), "test")
    history, taken = scanned.scan(study.get_trials(deepcopy=False))
    assert history == []  # the retried FAIL teaches nothing: its retry will
    assert scanned.encode(failed) in taken and scanned.encode(queued) in taken


def _small_space(ops: tuple[str, ...]) -> dict[str, CategoricalDistribution]:
    blocks = {f"block_{i}": CategoricalDistribution(ops) for i in range(8)}
    return {"width": CategoricalDistribution((8,))} | blocks


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize(
    ("ops", "networks", "n_trials"),
    [
        # Zero and one other op: 16 encodings but 5 networks a stage, 25 in all. Past 25
        # trials every network is taken, and the nearest-untaken search must have found each.
        (("conv3x3", "zero"), 25, 30),
        # Three ops: 31 networks a stage, 961 in all; 3^8 = 6,561 encodings.
        (("conv3x3", "skip", "zero"), 961, 60),
    ],
)
@pytest.mark.parametrize("multi", [False, True])
def test_no_network_is_proposed_twice_while_untaken_ones_remain(
    name, ops, networks, n_trials, multi
):
    """Without `canonical` every case fails: the samplers propose equivalent encodings."""
    distributions = _small_space(ops)
    sampler_cls = CLASSES[name]
    kwargs = {"population_size": 6} if name == "evolution" else {}
    sampler = sampler_cls(search_space=distributions, seed=1, canonical=space.canonical, **kwargs)

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        params = {n: trial.suggest_categorical(n, d.choices) for n, d in distributions.items()}
        # Rewards one encoding's zeros placed first: a sampler is drawn towards equivalents.
        value = sum(op == "zero" for op in list(params.values())[1:5]) - 0.1 * trial.number
        value += random.Random(trial.number).random()
        return (value, sum(op == "conv3x3" for op in params.values())) if multi else value

    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(sampler=sampler, directions=directions)
    study.optimize(objective, n_trials=n_trials)
    canon = [str(sorted(space.canonical(t.params).items())) for t in study.trials]
    untaken = min(n_trials, networks)
    assert len(set(canon[:untaken])) == untaken
