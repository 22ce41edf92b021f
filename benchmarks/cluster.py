"""Trials per second of N Ray workers on one shared study, without training (--launcher ray).

    python benchmarks/cluster.py                              # N = 1, 2, 4; 3 repeats each
    python benchmarks/cluster.py --workers 1,2 --trials 40 --repeats 2

Starts a local Ray cluster (ray.init) with as many logical CPUs as the largest N, so that every
worker runs at once, whatever the cores. Each configuration is a new PostgreSQL study that N
Ray tasks share the way nanonas.study.ray_launch's tasks do: before each trial a task asks the
run's tally actor (nanonas's own) for a grant, after it the task hands the finished trial to
the tally; the trial is benchmarks/storage_overhead.py's trial without training (9 categorical
suggestions, nanonas's attributes, 10 epochs of curve + report, the median pruner's reads, the
tell). So the figure is the storage's and the launcher's cost per trial, which training adds
to. Throughput: trials / wall time from the moment every task is ready (each has opened the
storage and loaded the study) to the last trial's end; the start-up (submit to all ready: Ray
starting worker processes that import torch and nanonas) is reported beside it.

Writes a Markdown table to --out with the machine, date and load average.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import ray

from nanonas.storage import open_storage
from nanonas.study.ray_launch import _Tally  # the launcher's own trial counting

sys.path.insert(0, str(Path(__file__).resolve().parent))
from storage_overhead import trial_without_training  # noqa: E402


class _Gate:
    """A Ray actor: the tasks say they are ready; the driver opens the gate once all are."""

    def __init__(self) -> None:
        self.ready = 0
        self.opened = False

    def arrive(self) -> None:
        self.ready += 1

    def count(self) -> int:
        return self.ready

    def open(self) -> None:
        self.opened = True

    def is_open(self) -> bool:
        return self.opened


def _task(url: str, name: str, index: int, epochs: int, tally: Any, gate: Any) -> dict:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(
        study_name=name,
        storage=open_storage(url),
        sampler=optuna.samplers.RandomSampler(seed=index),
    )
    failures: collections.Counter[str] = collections.Counter()
    objective = trial_without_training(epochs, index, failures)
    ray.get(tally.hello.remote(index, f"run:bench:{index}"))
    ray.get(gate.arrive.remote())
    while not ray.get(gate.is_open.remote()):
        time.sleep(0.02)
    start = time.monotonic()
    ends = []
    while ray.get(tally.claim.remote(index)):
        study.optimize(
            objective,
            n_trials=1,
            catch=(Exception,),
            callbacks=[lambda s, t: ray.get(tally.finish.remote(index, t))],
        )
        ends.append(time.monotonic())
    return {"start": start, "ends": ends, "failures": dict(failures)}


def _one(url: str, workers: int, trials: int, epochs: int) -> dict[str, Any]:
    name = f"bench-cluster-{uuid.uuid4().hex[:12]}"
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name=name, direction="maximize")
    load = os.getloadavg()[0]
    tally = ray.remote(num_cpus=0)(_Tally).remote(trials)
    gate = ray.remote(num_cpus=0)(_Gate).remote()
    task = ray.remote(num_cpus=1, max_retries=0)(_task)
    submitted = time.monotonic()
    refs = [task.remote(url, name, i, epochs, tally, gate) for i in range(workers)]
    while ray.get(gate.count.remote()) < workers:
        time.sleep(0.02)
    startup = time.monotonic() - submitted
    ray.get(gate.open.remote())
    outcomes = ray.get(refs)
    # time.monotonic is one clock for every process of one machine (CLOCK_MONOTONIC).
    start = min(o["start"] for o in outcomes)
    end = max(e for o in outcomes for e in o["ends"])
    done = sum(len(o["ends"]) for o in outcomes)
    study = optuna.load_study(study_name=name, storage=storage)
    states = collections.Counter(t.state.name for t in study.get_trials(deepcopy=False))
    optuna.delete_study(study_name=name, storage=storage)
    failures = sum(sum(o["failures"].values()) for o in outcomes)
    return {
        "workers": workers,
        "trials": done,
        "wall": end - start,
        "throughput": done / (end - start),
        "startup": startup,
        "states": dict(states),
        "failures": failures,
        "load": (load, os.getloadavg()[0]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,2,4", help="comma-separated Ray task counts")
    p.add_argument("--trials", type=int, default=60, help="per configuration, all workers")
    p.add_argument("--repeats", type=int, default=3, help="runs per worker count")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--postgresql-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--out", default="benchmarks/results/cluster.md")
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # The workers import storage_overhead from this folder.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()
    ray.init(num_cpus=max(counts), include_dashboard=False, logging_level="ERROR")
    rows = []
    try:
        for n in counts:
            for _ in range(args.repeats):
                row = _one(args.postgresql_url, n, args.trials, args.epochs)
                print(_row(row), flush=True)
                rows.append(row)
    finally:
        ray.shutdown()
    report = _report(rows, args, started, load_start, os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(f"wrote {args.out}")


def _row(r: dict[str, Any]) -> str:
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(r["states"].items()))
    return (
        f"| {r['workers']} | {r['trials']} | {r['wall']:.1f} | {r['throughput']:.2f} | "
        f"{r['startup']:.1f} | {r['failures']} | {states} | "
        f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |"
    )


def _report(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    started: datetime.datetime,
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
) -> str:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = f"ray {ray.__version__}, optuna {optuna.__version__}, Python "
    versions += platform.python_version()
    summary = []
    for n in sorted({r["workers"] for r in rows}):
        values = [r["throughput"] for r in rows if r["workers"] == n]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(
            f"| {n} | {len(values)} | {statistics.median(values):.2f} | {min(values):.2f} | "
            f"{max(values):.2f} | {spread:.2f} |"
        )
    return "\n".join(
        [
            "# Ray workers on one shared study: trials per second without training",
            "",
            f"{started:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores of an {cpu}, {versions}. "
            "PostgreSQL, Redis and MariaDB run on the same machine and share those cores, and "
            "other jobs may too: the load averages below say how busy it was.",
            "",
            "    python " + " ".join([sys.argv[0], *sys.argv[1:]]),
            "",
            f"Load average (1, 5, 15 min) at start {_load(load_start)}, at end "
            f"{_load(load_end)}; per row, the 1-minute figure before and after it.",
            "",
            f"A local Ray cluster with {max(r['workers'] for r in rows)} logical CPUs; each "
            f"configuration a new PostgreSQL study of {args.trials} trials of "
            f"{args.epochs} epochs without training, granted by nanonas's tally actor (see "
            "the docstring of benchmarks/cluster.py).",
            "",
            "| Ray workers | runs | median trials/s | min | max | stdev |",
            "|---|---|---|---|---|---|",
            *summary,
            "",
            "Every run:",
            "",
            "| Ray workers | trials | wall s | trials/s | start-up s | failures | final states "
            "| load |",
            "|---|---|---|---|---|---|---|---|",
            *[_row(r) for r in rows],
            "",
        ]
    )


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
