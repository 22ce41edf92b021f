"""CatCmaSampler and EvolutionSampler on a cheap synthetic objective over the real search space.

Every block has one best op and the width 64 is best: an architecture scores the number of
parameters at their best choice (0-9), plus a little seeded noise. No training happens here.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy
from cmaes._uhvi_archiving import UHVIArchive2D
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from nanonas import space
from nanonas.samplers import CatCmaSampler, EvolutionSampler, _uhvi

optuna.logging.set_verbosity(optuna.logging.WARNING)

BEST = {f"block_{i}": space.OP_NAMES[(2 * i + 1) % len(space.OP_NAMES)] for i in range(8)}
BEST["width"] = 64
SAMPLERS = {
    "cmaes": lambda seed, **kw: CatCmaSampler(search_space=space.distributions(), seed=seed, **kw),
    "evolution": lambda seed, **kw: EvolutionSampler(
        search_space=space.distributions(), seed=seed, **kw
    ),
}
# Under uniform random sampling a block hits its best op with p = 1/9 and the width with 1/4:
# a trial scores 8/9 + 1/4 = 1.14 on average with standard deviation 0.99, so the mean of 30
# trials is 1.14 +- 0.18, and 3.0 lies ten standard deviations above it.
RANDOM_MEAN = 8 / 9 + 1 / 4
CONCENTRATED = 3.0


def hits(params: dict) -> int:
    return sum(params[name] == best for name, best in BEST.items())


def score(trial: optuna.Trial) -> float:
    space.sample(trial)
    return hits(trial.params) + 0.1 * random.Random(trial.number).gauss(0, 1)


# Size per op (think parameters), times (width/24)^2: zero and skip are free, convs cost most.
SIZE = {
    "conv3x3": 3.0,
    "conv5x5": 5.0,
    "sep_conv3x3": 1.0,
    "sep_conv5x5": 1.5,
    "dil_conv3x3": 1.0,
    "maxpool3x3": 0.2,
    "avgpool3x3": 0.2,
    "skip": 0.0,
    "zero": 0.0,
}


def score_and_size(trial: optuna.Trial) -> tuple[float, float]:
    """Maximize hits, minimize size: the best ops of some blocks are costly, of others free."""
    arch = space.sample(trial)
    return float(hits(trial.params)), sum(SIZE[op] for op in arch.ops) * (arch.width / 24) ** 2


def hypervolume_2d(study: optuna.Study, ref: tuple[float, float] = (0.0, 100.0)) -> float:
    """Area dominated by the study's Pareto set in (-hits, size), inside `ref`."""
    points = sorted((-t.values[0], t.values[1]) for t in study.best_trials)
    area, last_size = 0.0, ref[1]
    for neg_hits, size in points:
        if neg_hits < ref[0] and size < last_size:
            area += (ref[0] - neg_hits) * (last_size - size)
            last_size = size
    return area


def sqlite(path: Path) -> optuna.storages.RDBStorage:
    """An SQLite storage that does not wait for the disk at every commit (only the test's
    speed changes: on a loaded 2-core machine fsync made this file several times slower)."""
    storage = optuna.storages.RDBStorage("sqlite:///" + str(path))
    sqlalchemy.event.listen(
        storage.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous = OFF")
    )
    storage.engine.dispose()
    return storage


def arch_of(trial: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(trial.params.items()))


# --- (a), (b): concentration on the best op per block -------------------------------------


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_concentrates_far_faster_than_random(name, seed):
    study = optuna.create_study(sampler=SAMPLERS[name](seed), direction="maximize")
    study.optimize(score, n_trials=150)
    last = [t.value for t in study.trials[-30:]]
    assert sum(last) / len(last) > CONCENTRATED > RANDOM_MEAN + 10 * 0.18

    # The analytic margin, checked once: random search really stays near its mean.
    baseline = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    baseline.optimize(score, n_trials=30)
    assert sum(t.value for t in baseline.trials) / 30 < CONCENTRATED - 1


@pytest.mark.parametrize("name", SAMPLERS)
def test_no_architecture_is_proposed_twice(name):
    study = optuna.create_study(sampler=SAMPLERS[name](0), direction="maximize")
    study.optimize(score, n_trials=120)
    assert len({arch_of(t) for t in study.trials}) == 120


# --- (c): resume exactness ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "directions"),
    [
        ("cmaes", ["maximize"]),
        ("cmaes", ["maximize", "minimize"]),  # COMO-CatCMA: another replay
        ("evolution", ["maximize"]),  # (with several objectives only the parent choice differs)
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


@pytest.mark.parametrize("multi", [False, True])
def test_cache_agrees_with_a_fresh_replay_when_trials_finish_out_of_order(multi):
    """Trials that finish late reshuffle the chunks CatCMA replays: the cached optimizer states
    must then give what a sampler replaying from scratch gives."""
    cached = SAMPLERS["cmaes"](5, population_size=4)
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(sampler=cached, directions=directions)
    order = random.Random(0)
    running: list[optuna.Trial] = []
    for _ in range(60):
        trial = study.ask()
        asked = study.get_trials(deepcopy=False)[-1]
        fresh = SAMPLERS["cmaes"](5, population_size=4)
        assert cached.sample_relative(study, asked, space.distributions()) == (
            fresh.sample_relative(study, asked, space.distributions())
        )
        space.sample(trial)
        running.append(trial)
        while len(running) > 3 or (running and order.random() < 0.4):
            done = running.pop(order.randrange(len(running)))
            size = sum(op != "zero" for op in done.params.values())
            study.tell(done, [hits(done.params), size] if multi else hits(done.params))


# --- (d): several objectives --------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLERS)
def test_multi_objective_finds_a_far_better_pareto_set_than_random(name):
    def hypervolume(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"])
        study.optimize(score_and_size, n_trials=300)
        assert study.best_trials and all(t.state == TrialState.COMPLETE for t in study.trials)
        assert len({arch_of(t) for t in study.trials}) == 300  # no trial spent on a duplicate
        return hypervolume_2d(study)

    # Random search, 300 trials, seeds 0-29: 385 +- 44, at most 476 (the true front: 788).
    assert hypervolume(SAMPLERS[name](0)) > 500


@pytest.mark.parametrize("name", SAMPLERS)
def test_three_objectives_accuracy_params_and_flops(name):
    """nanonas can ask for accuracy, params and flops at once: COMO-CatCMA's UHVI is n-D here."""

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        hits_, size = score_and_size(trial)
        return hits_, size, float(sum(op != "zero" for op in trial.params.values()))

    study = optuna.create_study(
        sampler=SAMPLERS[name](0), directions=["maximize", "minimize", "minimize"]
    )
    study.optimize(objective, n_trials=80)
    assert study.best_trials and len({arch_of(t) for t in study.trials}) == 80


# --- (e): pruned, failed and infeasible trials --------------------------------------------


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
    assert states.count(TrialState.FAIL) == 15 and states.count(TrialState.PRUNED) > 5
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


# --- (f): validation and the refusal to sample outside the space --------------------------


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
    sampler_cls = CatCmaSampler if name == "cmaes" else EvolutionSampler
    sampler = sampler_cls(search_space=space.distributions((8,)), seed=0)
    assert sampler.infer_relative_search_space(None, None) == space.distributions((8,))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: hits(space.sample(t, widths=(8,)).params()), n_trials=40, n_jobs=2)
    assert all(t.params["width"] == 8 and len(t.params) == 9 for t in study.trials)
    assert isinstance(study.trials[0].distributions["width"], CategoricalDistribution)


def test_uhvi_matches_cmaes_in_2d_and_counts_cells_in_3d():
    """Multi-objective CatCMA ranks by our n-D uncrowded hypervolume improvement (UHVI)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        front, point = rng.random((rng.integers(0, 6), 2)), 1.2 * rng.random(2)
        expected = UHVIArchive2D(front).uhvi(point, np.ones(2))
        assert _uhvi(point, front, np.ones(2)) == pytest.approx(expected, abs=1e-12)
    ref = np.full(3, 6.0)
    cells = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for _ in range(100):  # integer points: hypervolume is a count of unit cells
        front, point = rng.integers(0, 6, (rng.integers(1, 6), 3)), rng.integers(0, 6, 3)
        dominated = (cells[:, None, :] >= front[None]).all(-1).any(-1)
        gained = ((cells >= point).all(-1) & ~dominated).sum()
        value = _uhvi(point.astype(float), front.astype(float), ref)
        if (front <= point).all(-1).any():  # weakly dominated: no gain, a distance instead
            assert value <= 0
        else:
            assert value == pytest.approx(gained)
