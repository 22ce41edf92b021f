"""Per-trial storage overhead of a nanonas trial without training, per storage and worker count.

    python benchmarks/storage_overhead.py                                   # the full matrix
    python benchmarks/storage_overhead.py --storages postgresql --workers 8 --trials 200

Each configuration is a new study that W worker processes share, each opening it through
nanonas.storage.open_storage (with --pre-ping off: Optuna's RDBStorage without SQLAlchemy's
pool_pre_ping, to measure what the ping costs) and running
`study.optimize` on its share of --trials. A trial does what nanonas's objective does around
training: space.sample (9 categorical parameters), the user attrs arch/params/flops, the
duplicate lookup (finished trials), then per epoch the growing `val_acc` list, `trial.report`
and nanonas's median pruner (which reads the study's trials at the epochs where it can prune:
2 to 9 of 10), and the final tell. The sampler is RandomSampler so that sampler cost stays out
of the figure.

Per trial: the time between one trial's end and the next's in the same worker (the first from
the common start), pooled over the workers: median and p90; and the mean, wall x workers /
trials, which a worker starved by a lock cannot hide. Throughput: trials / wall time.
Failures are counted by kind: SQLite's "database is locked", deadlocks, other.
Writes a Markdown table to --out with the machine, date and load average, since other work
may share the CPU. Studies are deleted afterwards; SQLite and journal files live in a
temporary folder; Redis uses its own database index (--redis-url), flushed afterwards only if
it was empty before.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import optuna

from nanonas import records, space
from nanonas.pruning import EpochPruner
from nanonas.storage import check_url, mask, open_storage

STORAGES = ("sqlite", "postgresql", "mysql", "redis", "journal-file")
# Targets from the issue: PostgreSQL, 8 workers, 1,000 trials.
TARGET_MEDIAN = 0.2  # seconds per trial per worker


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storages", default=",".join(STORAGES), help="comma-separated")
    p.add_argument("--workers", default="1,4,8", help="comma-separated process counts")
    p.add_argument("--trials", type=int, default=1000, help="per configuration, all workers")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--postgresql-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--mysql-url", default="mysql+pymysql://root@127.0.0.1:3306/test")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    p.add_argument("--pre-ping", choices=("on", "off"), default="on", help="on: as nanonas opens")
    p.add_argument("--out", default="benchmarks/results/storage_overhead.md")
    args = p.parse_args()
    storages = [s for s in args.storages.split(",") if s]
    for name in storages:
        if name not in STORAGES:
            p.error(f"unknown storage {name!r}; valid: {', '.join(STORAGES)}")
    workers = [int(w) for w in args.workers.split(",")]
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    load_start = os.getloadavg()
    started = datetime.datetime.now().astimezone()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nanonas-bench-") as folder:
        for storage in storages:
            for n in workers:
                url = {
                    "sqlite": f"sqlite:///{folder}/{storage}-{n}.db",
                    "journal-file": f"{folder}/{storage}-{n}.log",
                    "postgresql": args.postgresql_url,
                    "mysql": args.mysql_url,
                    "redis": args.redis_url,
                }[storage]
                row = _run(
                    storage,
                    url,
                    workers=n,
                    trials=args.trials,
                    epochs=args.epochs,
                    pre_ping=args.pre_ping == "on",
                )
                print(_row(row), flush=True)
                rows.append(row)
    report = _report(rows, args, started, load_start, os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(f"wrote {args.out}")


def _run(
    storage: str, url: str, *, workers: int, trials: int, epochs: int, pre_ping: bool
) -> dict[str, Any]:
    redis_was_empty = storage != "redis" or _in_child(_redis_size, url) == 0
    name = f"bench-storage-{uuid.uuid4().hex[:12]}"
    _in_child(_create, url, name)  # the parent holds no connection its forks could inherit
    load = os.getloadavg()[0]
    context = multiprocessing.get_context("fork")  # the workers inherit torch and optuna
    ready = context.Barrier(workers + 1)
    results = context.Queue()
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    procs = [
        context.Process(
            target=_worker, args=(url, name, share, epochs, i, ready, results, pre_ping)
        )
        for i, share in enumerate(shares)
    ]
    for proc in procs:
        proc.start()
    # Every worker has opened the storage and loaded the study, or one could not (its outcome
    # says why) and broke the barrier.
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    start = time.monotonic()
    outcomes = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    errors = [o["error"] for o in outcomes if "error" in o]
    if errors:
        sys.exit(f"{storage} with {workers} workers: {errors[0]}")
    states = _in_child(_finish, url, name)
    if storage == "redis" and redis_was_empty:
        _in_child(_flush_redis, url)
    times = sorted(t for o in outcomes for t in o["times"])
    failures: collections.Counter[str] = collections.Counter()
    for o in outcomes:
        failures.update(o["failures"])
    wall = max(o["end"] for o in outcomes) - start
    return {
        "storage": storage,
        "url": mask(url),
        "workers": workers,
        "trials": len(times),
        "wall": wall,
        "throughput": len(times) / wall,
        "median": statistics.median(times),
        "p90": times[int(0.9 * (len(times) - 1))],
        "failures": failures,
        "states": states,
        "load": (load, os.getloadavg()[0]),
    }


def _worker(
    url: str,
    name: str,
    n_trials: int,
    epochs: int,
    index: int,
    ready: Any,
    results: Any,
    pre_ping: bool,
) -> None:
    failures: collections.Counter[str] = collections.Counter()
    try:
        if pre_ping or not url.startswith(("postgresql", "mysql")):
            opened = open_storage(url)
        else:
            engine_kwargs = {"pool_pre_ping": False}
            opened = optuna.storages.RDBStorage(check_url(url), engine_kwargs=engine_kwargs)
        study = optuna.load_study(
            study_name=name,
            storage=opened,
            sampler=optuna.samplers.RandomSampler(seed=index),
        )
    except Exception as e:
        ready.abort()
        results.put({"error": f"{type(e).__name__}: {e}"})
        return

    objective = trial_without_training(epochs, index, failures)

    times: list[float] = []
    last = [0.0]

    def timed(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = time.monotonic()
        times.append(now - last[0])
        last[0] = now

    escaped = 0  # errors in ask/tell, outside the objective, which end optimize
    ready.wait()
    last[0] = time.monotonic()
    while len(times) + escaped < n_trials:
        try:
            study.optimize(
                objective,
                n_trials=n_trials - len(times) - escaped,
                callbacks=[timed],
                catch=(Exception,),
            )
        except Exception as e:
            failures[_kind(e)] += 1
            escaped += 1
            last[0] = time.monotonic()
    results.put({"times": times, "failures": dict(failures), "end": time.monotonic()})


def trial_without_training(epochs: int, index: int, failures: collections.Counter[str]) -> Any:
    """The objective of a trial without training: what nanonas's objective does around training
    (see the module docstring), failures counted by kind in `failures`. benchmarks/cluster.py
    runs it too."""
    pruner = EpochPruner("median", max_epochs=epochs)  # as the objective builds it
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial: optuna.Trial) -> float:
        try:
            arch = space.sample(trial)
            rng = random.Random(trial.number)
            sizes = {"params": rng.randrange(10_000, 2_000_000)}
            records.write_candidate(  # the attributes nanonas writes before training
                trial,
                arch=arch,
                params=sizes["params"],
                flops=rng.randrange(1_000_000, 300_000_000),
                worker=f"bench:{index}",
                run=f"run:bench:{index}",
                seed=trial.number,
            )
            trial.study.get_trials(deepcopy=False, states=finished)  # the duplicate lookup
            curve: list[float] = []
            for epoch in range(1, epochs + 1):
                curve.append(min(1.0, 0.1 + 0.08 * epoch + 0.1 * rng.random()))
                records.write_curve(trial, curve)
                trial.report(curve[-1], epoch)
                if pruner.judges(epoch):  # asked, not obeyed: every trial costs the same epochs
                    trials = trial.study.get_trials(deepcopy=False)
                    pruner.prune_reason(trials, number=trial.number, curve=curve, sizes=sizes)
            return curve[-1]
        except Exception as e:
            failures[_kind(e)] += 1
            raise

    return objective


def _kind(error: BaseException) -> str:
    text = ""
    current: BaseException | None = error
    while current is not None and len(text) < 10_000:
        text += f" {current}"
        current = current.__cause__ or current.__context__
    if "database is locked" in text:
        return "locked"
    if "deadlock" in text.lower():
        return "deadlock"
    return f"other ({type(error).__name__})"


def _in_child(fn: Any, *args: Any) -> Any:
    """Run fn(*args) in a forked process and return its result (storage work stays out of the
    parent, so no fork inherits a live database connection)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    proc = context.Process(target=lambda: queue.put(fn(*args)))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _create(url: str, name: str) -> None:
    optuna.create_study(storage=open_storage(url), study_name=name, direction="maximize")


def _finish(url: str, name: str) -> dict[str, int]:
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    states = collections.Counter(t.state.name for t in study.get_trials(deepcopy=False))
    optuna.delete_study(study_name=name, storage=storage)
    return dict(states)


def _redis_size(url: str) -> int:
    import redis

    return redis.Redis.from_url(url).dbsize()


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _row(r: dict[str, Any]) -> str:
    f = r["failures"]
    other = sum(f.values()) - f.get("locked", 0) - f.get("deadlock", 0)
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(r["states"].items()))
    return (
        f"| {r['storage']} | {r['workers']} | {r['trials']} | {r['wall']:.1f} | "
        f"{r['throughput']:.1f} | {r['median']:.3f} | {r['p90']:.3f} | "
        f"{r['wall'] * r['workers'] / max(r['trials'], 1):.3f} | "
        f"{f.get('locked', 0)} | {f.get('deadlock', 0)} | {other} | {states} | "
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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = f"optuna {optuna.__version__}, Python {platform.python_version()}"
    lines = [
        "# Storage overhead per trial (no training)",
        "",
        f"{started:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores of an {cpu}, {versions}; "
        "the database servers run on the same machine and share those cores.",
        "",
        "    python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "",
        f"Load average (1, 5, 15 min) at start {_load(load_start)}, at end {_load(load_end)}; "
        "per row, the 1-minute figure before and after it.",
        "",
        f"A trial: 9 categorical suggestions, 3 user attrs, then {args.epochs} epochs of "
        "set_user_attr('val_acc', growing list) + report, nanonas's median pruner reading the "
        "study's trials at epochs 2-9, tell; "
        f"RandomSampler; pool_pre_ping {args.pre_ping}. Seconds per trial are per worker, between "
        "consecutive trials of that worker, pooled over the workers; the mean is wall x workers / "
        "trials, which also counts a worker's time waiting for a lock.",
        "",
        "| storage | workers | trials | wall s | trials/s | median s/trial | p90 s/trial "
        "| mean s/trial | locked | deadlock | other failures | final states | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[_row(r) for r in rows],
        "",
    ]
    for r in rows:
        if r["storage"] == "postgresql" and r["workers"] == 8:
            f = r["failures"]
            bad = f.get("locked", 0) + f.get("deadlock", 0)
            verdict = "met" if r["median"] < TARGET_MEDIAN and bad == 0 else "NOT met"
            lines.append(
                f"Target (PostgreSQL, 8 workers: median under {TARGET_MEDIAN} s per trial, no "
                f"locked/deadlock failures) at {r['trials']} trials: {verdict} "
                f"(median {r['median']:.3f} s, {bad} locked/deadlock failures)."
            )
            lines.append("")
    return "\n".join(lines)


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
