"""Search quality of every registered sampler on a cheap stand-in for CIFAR-10 accuracy, and
on NAS-Bench-201 (benchmarks/nb201.py, which says what is measured there).

    python benchmarks/samplers.py                        # all but gp, 5 seeds x 200 trials
    python benchmarks/samplers.py --samplers cmaes,random --seeds 10 --trials 300
    python benchmarks/samplers.py --samplers gp --trials 50   # gp: minutes per run
    python benchmarks/samplers.py --benchmark nb201 --seeds 10   # needs the [bench] extra
    python benchmarks/samplers.py --seed-start 100 ...   # tuning seeds, apart from reported ones

Each sampler is built by the registry a study uses, `nanonas.samplers.make(name, ...)` with the
default StudyConfig's population size,
and searches the real space through `space.sample(trial)`; only training is replaced by
`Landscape`, a seeded synthetic accuracy shaped like the real one:

- per-block op effects: convolutions (plain and separable) beat pooling; skip and zero cost no
  parameters but are weaker; how much a block matters, and its exact op preferences, vary;
- interactions between adjacent blocks (two empty blocks in a row hurt, pooling after pooling
  hurts, convolutions in a row help a little, plus seeded random pair effects);
- a capacity effect with diminishing returns: 1 - exp(-P / kappa) of a parameter count P that
  grows with the convolution kernels, 4x in the second stage, and with width squared;
- noise: N(0, 0.003) per trial, seeded by (seed, trial number), as retraining would vary.

The optimum is exact: dynamic programming over the chain of blocks with (previous op, parameter
units) as the state, for each width; the script checks it against 20,000 random architectures
and all one-change neighbours. Magnitudes are calibrated once (to match real trials of this
space, 0.83-0.85 after 30 epochs) so that random architectures score about 0.68-0.80 and the
optimum 0.86; they were not tuned to any sampler.

Best-so-far is the noise-free accuracy of the trial with the best observed accuracy so far: the
architecture a user would pick. Appends nothing; rewrites --out (benchmarks/results/samplers.md).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import nb201  # benchmarks/nb201.py, beside this script
import numpy as np
import optuna

from nanonas import samplers, space

OPS = space.OP_NAMES
N_BLOCKS = 2 * space.BLOCKS_PER_STAGE
# Relative op quality before block effects: conv > sep_conv > dil_conv >> skip > pool > zero.
QUALITY = {
    "conv3x3": 1.00,
    "conv5x5": 0.95,
    "sep_conv3x3": 0.95,
    "sep_conv5x5": 0.90,
    "dil_conv3x3": 0.80,
    "maxpool3x3": 0.35,
    "avgpool3x3": 0.30,
    "skip": 0.50,
    "zero": 0.00,
}
# Parameter units of an op per (channels/48)^2 in stage 1; stage 2 has twice the channels.
UNITS = {"conv3x3": 9, "conv5x5": 25, "sep_conv3x3": 2, "sep_conv5x5": 3, "dil_conv3x3": 2}
BLOCK_WEIGHT = (1.0, 0.9, 0.7, 0.5, 1.1, 0.9, 0.7, 0.5)  # the first block of a stage matters most
CAPACITY, KAPPA = 2.0, 60.0  # capacity term CAPACITY * (1 - exp(-P / KAPPA)), raw units
NOISE = 0.003  # accuracy, per trial
OPTIMUM, RANDOM_MEAN = 0.86, 0.74  # calibration targets (accuracy)
MILESTONES = (10, 25, 50, 100, 200)
# Left out by default, with the reason printed in the report:
SLOW = {
    "gp": "GPSampler took 274 s for its first 100 trials on the 2 shared CPU cores, and each "
    "trial costs more than the last: 5 seeds x 200 trials would take hours",
}


class Landscape:
    """A seeded accuracy landscape over the real search space, with an exact optimum."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        k = len(OPS)
        quality = np.array([QUALITY[op] for op in OPS])
        weight = np.array(BLOCK_WEIGHT)[:, None]
        self.main = weight * (quality + 0.15 * rng.standard_normal((N_BLOCKS, k)))
        pair = 0.1 * rng.standard_normal((N_BLOCKS - 1, k, k))
        conv = np.array([op in UNITS for op in OPS])
        pool = np.array(["pool" in op for op in OPS])
        zero = np.array([op == "zero" for op in OPS])
        pair += (
            -0.4 * np.outer(zero, zero) - 0.2 * np.outer(pool, pool) + 0.1 * np.outer(conv, conv)
        )
        self.pair = pair * ((weight[:-1] + weight[1:]) / 2)[:, :, None]
        stage = np.array([1 if i < space.BLOCKS_PER_STAGE else 4 for i in range(N_BLOCKS)])
        self.units = stage[:, None] * np.array([UNITS.get(op, 0) for op in OPS])[None, :]
        # Calibrate raw score -> accuracy: the optimum at OPTIMUM, the mean random one at
        # RANDOM_MEAN (20,000 random architectures, a fixed sample).
        self._scale, self._offset = 1.0, 0.0
        self.best_raw, self.best_arch = self._optimum()
        sample = [self.raw(a) for a in random_architectures(20_000, rng)]
        self._scale = (OPTIMUM - RANDOM_MEAN) / (self.best_raw - float(np.mean(sample)))
        self._offset = OPTIMUM - self._scale * self.best_raw

    def raw(self, arch: space.Architecture) -> float:
        idx = [OPS.index(op) for op in arch.ops]
        score = sum(self.main[i, a] for i, a in enumerate(idx))
        score += sum(self.pair[i, idx[i], idx[i + 1]] for i in range(N_BLOCKS - 1))
        units = sum(self.units[i, a] for i, a in enumerate(idx))
        return float(score + self._capacity(units, arch.width))

    def accuracy(self, arch: space.Architecture) -> float:
        """Noise-free accuracy."""
        return self._scale * self.raw(arch) + self._offset

    @staticmethod
    def _capacity(units: float | np.ndarray, width: int) -> float | np.ndarray:
        return CAPACITY * (1 - np.exp(-units * (width / 48) ** 2 / KAPPA))

    def _optimum(self) -> tuple[float, space.Architecture]:
        """Exact: dynamic programming over blocks, state (op of the block, units so far)."""
        k, top = len(OPS), int(self.units.max(axis=1).sum())
        best_value, best_arch = -math.inf, None
        for width in space.WIDTHS:
            value = np.full((k, top + 1), -math.inf)
            for a in range(k):
                value[a, self.units[0, a]] = self.main[0, a]
            back = []
            for i in range(1, N_BLOCKS):
                new = np.full((k, top + 1), -math.inf)
                arg = np.zeros((k, top + 1), dtype=int)
                for b in range(k):
                    shift = self.units[i, b]
                    cand = value + self.pair[i - 1, :, b][:, None]  # (previous op, units)
                    prev = cand.argmax(axis=0)
                    best = cand.max(axis=0) + self.main[i, b]
                    new[b, shift:] = best[: top + 1 - shift]
                    arg[b, shift:] = prev[: top + 1 - shift]
                value = new
                back.append(arg)
            total = value + self._capacity(np.arange(top + 1), width)[None, :]
            b, u = np.unravel_index(int(total.argmax()), total.shape)
            if total[b, u] > best_value:
                ops = [b]
                for i in range(N_BLOCKS - 1, 0, -1):
                    a = back[i - 1][ops[-1], u]
                    u -= self.units[i, ops[-1]]
                    ops.append(a)
                best_value = float(total.max())
                best_arch = space.Architecture.from_ops([OPS[o] for o in reversed(ops)], width)
        assert best_arch is not None and math.isclose(self.raw(best_arch), best_value)
        return best_value, best_arch

    def check_optimum(self, rng: np.random.Generator) -> None:
        """No random architecture and no one-change neighbour beats the DP optimum."""
        best = self.raw(self.best_arch)
        assert all(self.raw(a) <= best + 1e-9 for a in random_architectures(20_000, rng))
        ops, width = list(self.best_arch.ops), self.best_arch.width
        for i in range(N_BLOCKS):
            for op in OPS:
                arch = space.Architecture.from_ops(ops[:i] + [op] + ops[i + 1 :], width)
                assert self.raw(arch) <= best + 1e-9
        for w in space.WIDTHS:
            assert self.raw(space.Architecture.from_ops(ops, w)) <= best + 1e-9


def random_architectures(n: int, rng: np.random.Generator) -> list[space.Architecture]:
    widths = rng.choice(space.WIDTHS, n)
    ops = rng.integers(len(OPS), size=(n, N_BLOCKS))
    return [
        space.Architecture.from_ops([OPS[o] for o in row], int(w))
        for row, w in zip(ops, widths, strict=True)
    ]


def run_one(name: str, seed: int, trials: int, landscape: Landscape) -> tuple[list[float], float]:
    """Best-so-far (noise-free accuracy of the observed best) after each trial, and seconds."""
    sampler = nb201.make(
        name, search_space=space.distributions(), seed=seed, canonical=space.canonical
    )
    study = optuna.create_study(sampler=sampler, direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        arch = space.sample(trial)
        noise = np.random.default_rng([seed, trial.number]).normal(0, NOISE)
        trial.set_user_attr("true", landscape.accuracy(arch))
        return landscape.accuracy(arch) + noise

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    seconds = time.perf_counter() - start
    curve, best_seen, best_true = [], -math.inf, -math.inf
    for t in study.trials:
        if t.value > best_seen:
            best_seen, best_true = t.value, t.user_attrs["true"]
        curve.append(best_true)
    return curve, seconds


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds per sampler (default 5)")
    p.add_argument("--trials", type=int, default=200, help="trials per run (default 200)")
    default = ",".join(n for n in samplers.SAMPLERS if n not in SLOW)
    p.add_argument("--samplers", default=default, help=f"comma-separated (default {default})")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--benchmark", choices=("landscape", "nb201"), default="landscape")
    p.add_argument("--datasets", default=",".join(nb201.DATASETS), help="nb201 only")
    p.add_argument("--out", help="default benchmarks/results/samplers.md or samplers-nb201.md")
    args = p.parse_args()
    names = [n.strip() for n in args.samplers.split(",") if n.strip()]
    known = [*samplers.SAMPLERS, *nb201.VARIANTS]
    unknown = [n for n in names if n not in known]
    if unknown or args.seeds < 1 or args.trials < 1:
        sys.exit(f"bad arguments: unknown samplers {unknown}; valid: {', '.join(known)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    command = (
        f"    python benchmarks/samplers.py --benchmark {args.benchmark} --seeds {args.seeds} "
        f"--seed-start {args.seed_start} --trials {args.trials} --samplers {','.join(names)}"
    )
    if args.benchmark == "nb201":
        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        out = args.out or "benchmarks/results/samplers-nb201.md"
        lines = [
            "# Sampler search quality on NAS-Bench-201",
            "",
            f"{datetime.date.today()}, {_cpu()} ({_cpus()} cores available, shared with other "
            f"jobs; load average {os.getloadavg()[0]:.2f} at the start), Python "
            f"{platform.python_version()}, optuna {optuna.__version__}; each sampler built as "
            "`nanonas.study` builds it (default StudyConfig, population_size 20), "
            f"seeds {seeds[0]}-{seeds[-1]}:",
            "",
            command + f" --datasets {','.join(datasets)}",
            "",
            *nb201.report(names, seeds, args.trials, datasets),
        ]
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return

    landscape = Landscape(seed=0)
    landscape.check_optimum(np.random.default_rng(1))
    sample = [landscape.accuracy(a) for a in random_architectures(20_000, np.random.default_rng(2))]
    optimum = landscape.accuracy(landscape.best_arch)

    curves: dict[str, list[list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for name in names:
        for seed in seeds:
            curve, took = run_one(name, seed, args.trials, landscape)
            curves.setdefault(name, []).append(curve)
            seconds.setdefault(name, []).append(took)
            print(f"{name:10s} seed {seed}: best {curve[-1]:.4f} in {took:.1f} s", file=sys.stderr)

    marks = [m for m in MILESTONES if m <= args.trials] or [args.trials]
    if "random" in curves and args.trials >= 100:
        target = statistics.mean(c[99] for c in curves["random"])
        target_text = f"random search's mean best after 100 trials, {target:.4f}"
    else:
        target, target_text = None, "(needs random in --samplers and --trials >= 100)"

    lines = [
        "# Sampler search quality on a stand-in accuracy landscape",
        "",
        f"{datetime.date.today()}, {_cpu()} ({_cpus()} cores available, shared with other "
        f"jobs), Python {platform.python_version()}, "
        f"optuna {optuna.__version__}; each sampler built by `nanonas.samplers.make` with "
        "the default StudyConfig (population_size 20):",
        "",
        command,
        "",
        f"Landscape (seed 0, see the script's docstring): optimum {optimum:.4f} at "
        f"`{landscape.best_arch}` (exact, by dynamic programming); 20,000 random "
        f"architectures: mean {statistics.mean(sample):.4f}, sd {statistics.stdev(sample):.4f}, "
        f"5-95% {np.percentile(sample, 5):.4f}-{np.percentile(sample, 95):.4f}, "
        f"max {max(sample):.4f}. Noise N(0, {NOISE}) per trial.",
        "",
        f"Best-so-far: the noise-free accuracy of the best observed trial, mean ± sd over "
        f"n = {args.seeds} seeds ({seeds[0]}-{seeds[-1]}).",
        "",
        "| sampler | " + " | ".join(f"{m} trials" for m in marks) + " | gap to optimum "
        f"at {args.trials} | trials to reach target | s per run |",
        "|---|" + "---|" * (len(marks) + 3),
    ]
    for name in names:
        runs = curves[name]
        cells = [_mean_std([c[m - 1] for c in runs]) for m in marks]
        gap = _mean_std([optimum - c[-1] for c in runs])
        if target is None:
            reach = "-"
        else:
            hit = [next((i + 1 for i, v in enumerate(c) if v >= target), None) for c in runs]
            reached = [h for h in hit if h is not None]
            reach = (f"{statistics.mean(reached):.0f}" if reached else "-") + (
                f" ({len(reached)}/{len(runs)} reached)" if len(reached) < len(runs) else ""
            )
        took = f"{statistics.mean(seconds[name]):.1f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {gap} | {reach} | {took} |")
    lines += [
        "",
        f"Trials to reach target: the mean, over the seeds that reached it, of the first trial "
        f"whose best-so-far reaches {target_text}; seeds that never did are counted apart.",
    ]
    skipped = [n for n in SLOW if n not in names]
    for name in skipped:
        lines.append(f"Not run: `{name}` ({SLOW[name]}); `--samplers {name}` runs it anyway.")
    out = args.out or "benchmarks/results/samplers.md"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _cpu() -> str:
    try:  # Linux names the model; platform.processor() often says only x86_64
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
