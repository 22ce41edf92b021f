"""The cheap synthetic objective the sampler tests search, over the real search space.

Every block has one best op and the width 64 is best: an architecture scores the number of
parameters at their best choice (0-9), plus a little seeded noise. No training happens here.
The `check_*` functions are the search-quality tests that every nanonas sampler must pass;
each sampler's test file calls them with its own sampler.
"""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from nanonas import space
from nanonas.samplers import (
    CatCmaSampler,
    EvolutionSampler,
    HybridSampler,
    LocalSearchSampler,
    SurrogateSampler,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

BEST = {f"block_{i}": space.OP_NAMES[(2 * i + 1) % len(space.OP_NAMES)] for i in range(8)}
BEST["width"] = 64
SAMPLERS = {
    "cmaes": lambda seed, **kw: CatCmaSampler(search_space=space.distributions(), seed=seed, **kw),
    "evolution": lambda seed, **kw: EvolutionSampler(
        search_space=space.distributions(), seed=seed, **kw
    ),
    "local": lambda seed, **kw: LocalSearchSampler(
        search_space=space.distributions(), seed=seed, **kw
    ),
    "surrogate": lambda seed, **kw: SurrogateSampler(
        search_space=space.distributions(), seed=seed, **kw
    ),
    "hybrid": lambda seed, **kw: HybridSampler(search_space=space.distributions(), seed=seed, **kw),
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


def check_concentrates_far_faster_than_random(name: str, seed: int):
    study = optuna.create_study(sampler=SAMPLERS[name](seed), direction="maximize")
    study.optimize(score, n_trials=150)
    last = [t.value for t in study.trials[-30:]]
    assert sum(last) / len(last) > CONCENTRATED > RANDOM_MEAN + 10 * 0.18

    # The analytic margin, checked once: random search really stays near its mean.
    baseline = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    baseline.optimize(score, n_trials=30)
    assert sum(t.value for t in baseline.trials) / 30 < CONCENTRATED - 1


def check_multi_objective_finds_a_far_better_pareto_set_than_random(name: str):
    def hypervolume(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"])
        study.optimize(score_and_size, n_trials=300)
        assert study.best_trials and all(t.state == TrialState.COMPLETE for t in study.trials)
        assert len({arch_of(t) for t in study.trials}) == 300  # no trial spent on a duplicate
        return hypervolume_2d(study)

    # Random search, 300 trials, seeds 0-29: 385 +- 44, at most 476 (the true front: 788).
    assert hypervolume(SAMPLERS[name](0)) > 500


def check_three_objectives_accuracy_params_and_flops(name: str):
    """nanonas can ask for accuracy, params and flops at once: COMO-CatCMA's UHVI is n-D here."""

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        hits_, size = score_and_size(trial)
        return hits_, size, float(sum(op != "zero" for op in trial.params.values()))

    study = optuna.create_study(
        sampler=SAMPLERS[name](0), directions=["maximize", "minimize", "minimize"]
    )
    study.optimize(objective, n_trials=80)
    assert study.best_trials and len({arch_of(t) for t in study.trials}) == 80
