"""What the dashboard costs a trial: its picture, its note and the throttled plot refresh.

    python benchmarks/dashboard.py                       # 200 trials, 20 epochs each
    python benchmarks/dashboard.py --trials 50 --out -   # print the table only

No training: a SQLite study is filled the way nanonas's objective fills it (an architecture at
width 48, its sizes, a 20-epoch curve, a value), and per trial only the dashboard's pieces are
timed, as nanonas.study.run calls them: `Uploads.picture` (draw the SVG, write it to the
artifact folder, record it in the trial), `Uploads.note` (the Markdown note) and
`Refresher.trial_done` (draw and store every figure: every 10th trial, or after a slow save
every T / 25 ms trials). The refresher's 60 s gate is off here (seconds=0): a benchmark of a
few seconds would otherwise refresh once, and the worst case is trials faster than that. The
figures grow with the study, so later refreshes cost more; the table gives their cost too.

Target (issue 14): at most 50 ms per trial on this CPU, under 1% of a 10 s GPU trial.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from nanonas import records, space
from nanonas.dashboard import artifacts, plots
from nanonas.model import NanoNet, count_params

RESULTS = Path(__file__).parent / "results" / "dashboard-cpu.md"


def _stats(ms: list[float]) -> str:
    ordered = sorted(ms)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"{statistics.mean(ms):.1f} | {statistics.median(ms):.1f} | {p90:.1f} | "
        f"{ordered[0]:.1f} | {ordered[-1]:.1f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default=str(RESULTS), help="the results file, or - for stdout")
    args = p.parse_args()
    if args.trials < 50:
        p.error(f"--trials must be at least 50, got {args.trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    folder = Path(tempfile.mkdtemp(prefix="nanonas-dashboard-"))
    storage = f"sqlite:///{folder / 'bench.db'}"
    study = optuna.create_study(storage=storage, study_name="bench", direction="maximize")
    with warnings.catch_warnings():  # experimental since Optuna 3.2; nanonas calls it too
        warnings.simplefilter("ignore")
        study.set_metric_names(["val_acc"])
    uploads = artifacts.Uploads(where=artifacts.prepare("", storage), num_classes=10, in_channels=3)
    refresher = plots.Refresher(save=lambda: plots.save(study), seconds=0.0)
    parts: dict[str, list[float]] = {"picture": [], "note": [], "refresh": [], "total": []}
    refreshes: list[float] = []
    dists = space.distributions(space.WIDTHS)
    for number in range(args.trials):
        ops = [rng.choice(space.OP_NAMES) for _ in range(2 * space.BLOCKS_PER_STAGE)]
        arch = space.Architecture.from_ops(ops, 48)
        trial = study.ask(dists)
        params = count_params(NanoNet(arch))
        records.write_candidate(
            trial, arch=arch, params=params, flops=params * 250, worker="bench", run="r", seed=0
        )
        curve = [min(0.95, 0.3 + 0.6 * (1 - 0.85**e) + rng.gauss(0, 0.02)) for e in range(20)]
        records.write_curve(trial, curve[: args.epochs])
        records.write_training(trial, seconds=10.0, device="cuda")

        t0 = time.perf_counter()
        uploads.picture(trial, arch)
        t1 = time.perf_counter()
        frozen = study.tell(trial, curve[args.epochs - 1])
        t2 = time.perf_counter()
        uploads.note(trial, frozen)
        t3 = time.perf_counter()
        refresher.trial_done()
        t4 = time.perf_counter()
        ms = [1000 * (t1 - t0), 1000 * (t3 - t2), 1000 * (t4 - t3)]
        for key, value in zip(("picture", "note", "refresh"), ms, strict=True):
            parts[key].append(value)
        parts["total"].append(sum(ms))
        if refresher.saves and refresher.saves[-1] == number + 1:
            refreshes.append(ms[2])
    t0 = time.perf_counter()
    refresher.finish()
    final = 1000 * (time.perf_counter() - t0)

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/dashboard.py " + " ".join(sys.argv[1:])
    lines = [
        "# Dashboard cost per trial (benchmarks/dashboard.py)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared "
        f"with other jobs; Python {platform.python_version()}, optuna {optuna.__version__}; "
        f"SQLite in {folder}  ",
        f"Load (`uptime` after the run): {load}  ",
        f"n = {args.trials} trials, {args.epochs}-epoch curves, width-48 networks; "
        "the refresher's 60 s gate off (the worst case).",
        "",
        "| ms per trial | mean | median | p90 | min | max |",
        "|---|---|---|---|---|---|",
        *(f"| {key} | {_stats(ms)} |" for key, ms in parts.items()),
        "",
        f"Refreshes (4 figures drawn and stored) after trials {refresher.saves[:-1]}: first "
        f"{refreshes[0]:.0f} ms, last {refreshes[-1]:.0f} ms; the end-of-run save {final:.0f} "
        f"ms. Refresh time per trial, amortized: {sum(refreshes) / args.trials:.1f} ms.",
        "",
        f"Target: total <= 50 ms per trial: mean {statistics.mean(parts['total']):.1f} ms "
        f"-> {'met' if statistics.mean(parts['total']) <= 50 else 'NOT met'}.",
    ]
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(text)


if __name__ == "__main__":
    main()
