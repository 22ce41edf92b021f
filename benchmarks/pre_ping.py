"""What SQLAlchemy's pool_pre_ping costs a nanonas trial: round trips counted, not timed.

    python benchmarks/pre_ping.py --trials 50

On a shared, loaded machine timings of whole trials swing more than the ping could cost, so this
counts instead: per trial, the SQL statements nanonas's pattern sends (engine event
before_cursor_execute) and the pool checkouts, each of which pre_ping turns into one more round
trip (`SELECT 1`). Then it times that round trip itself (median of 2,000 pings on one
connection) and a whole trial, and reports the ping's share of a trial's storage time. A trial:
space.sample (9 parameters), the candidate's attributes, the duplicate lookup, 10 epochs of the
curve and a report, nanonas's median pruner reading the trials at epochs 2-9, the tell; as in
benchmarks/storage_overhead.py. The storage is opened by nanonas.storage.open_storage, so
pre_ping is on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
import uuid

import optuna
import sqlalchemy

from nanonas import records, space
from nanonas.storage import open_storage

URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/test",
}


def _trial(study: optuna.Study, epochs: int = 10) -> None:
    trial = study.ask()
    arch = space.sample(trial)
    records.write_candidate(
        trial, arch=arch, params=1, flops=1, worker="bench", run="bench", seed=trial.number
    )
    study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    curve: list[float] = []
    for epoch in range(1, epochs + 1):
        curve.append(0.1 * epoch)
        records.write_curve(trial, curve)
        trial.report(curve[-1], epoch)
        if epoch >= 2 and epoch < epochs:
            study.get_trials(deepcopy=False)
    study.tell(trial, curve[-1])


def measure(kind: str, trials: int) -> dict[str, float]:
    storage = open_storage(URLS[kind])
    engine = storage.engine
    counts = {"statements": 0, "checkouts": 0}

    def statement(*args: object) -> None:
        counts["statements"] += 1

    def checkout(*args: object) -> None:
        counts["checkouts"] += 1

    name = f"bench-preping-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    _trial(study)  # warm: tables cached, pool filled
    sqlalchemy.event.listen(engine, "before_cursor_execute", statement)
    sqlalchemy.event.listen(engine.pool, "checkout", checkout)
    start = time.perf_counter()
    for _ in range(trials):
        _trial(study)
    seconds = (time.perf_counter() - start) / trials
    sqlalchemy.event.remove(engine, "before_cursor_execute", statement)
    sqlalchemy.event.remove(engine.pool, "checkout", checkout)
    with engine.connect() as connection:  # one round trip, as the ping makes it
        raw = connection.connection.dbapi_connection
        cursor = raw.cursor()
        rtts = []
        for _ in range(2000):
            t = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            rtts.append(time.perf_counter() - t)
    optuna.delete_study(study_name=name, storage=storage)
    rtt = statistics.median(rtts)
    per_trial = {k: v / trials for k, v in counts.items()}
    return {
        **per_trial,
        "rtt_ms": rtt * 1000,
        "trial_ms": seconds * 1000,
        "ping_ms": per_trial["checkouts"] * rtt * 1000,
        "ping_share": per_trial["checkouts"] * rtt / seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storages", default="postgresql,mysql")
    p.add_argument("--trials", type=int, default=50)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    load = os.getloadavg()
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, optuna {optuna.__version__}\n"
    )
    print(
        "| storage | statements/trial | checkouts (pings)/trial | extra round trips "
        "| ping ms | ping ms/trial | trial ms | ping share of trial |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.storages.split(","):
        r = measure(kind, args.trials)
        print(
            f"| {kind} | {r['statements']:.1f} | {r['checkouts']:.1f} "
            f"| {r['checkouts'] / r['statements']:.0%} | {r['rtt_ms']:.3f} "
            f"| {r['ping_ms']:.1f} | {r['trial_ms']:.0f} | {r['ping_share']:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
