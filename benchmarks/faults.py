"""Storage faults, reproduced against the real servers through an in-process TCP proxy.

    python benchmarks/faults.py                                  # every case on every server
    python benchmarks/faults.py --storages postgresql --cases drops,gone

Each row runs `python -m nanonas.study` (synthetic data, width 8, 3 epochs, heartbeat 1 s so the
grace period is 2 s (3 s in the gone rows), --reconnect-timeout 8) against a new study on a real
server, with every connection passing through a nanonas.storage.proxy.Proxy in this process, and
makes one fault:

- drops: every connection is reset once a second, 20 times, while trials run;
- create: the COMMIT that creates a trial is applied by the server, but its answer is cut;
- down: the server refuses connections for 5 s (over twice the heartbeat), 2 workers;
- frozen-briefly: every connection carries nothing for 5 s, then goes on;
- lost: two runs on one study, each through its own proxy; one is cut off for 5 s while the
  other fails its trial as stale and re-queues it;
- gone: refused for good after a few trials; the run must end in one line, exit 75;
- gone-workers: the same with 2 workers: one line from each, naming its own trial;
- frozen: frozen for good; the same.

Columns: trials asked; finished (COMPLETE or PRUNED); extra trials (created beyond those asked,
not counting retries of failed trials); left RUNNING (RUNNING or WAITING at the end); exit code;
lines of output (stderr, less Optuna's "A new study created" line; --no-progress); seconds (the
whole run; for gone and frozen, from the fault to the exit). The study is read directly, not
through the proxy. Targets: finished = asked, 0 extra, 0 left RUNNING, lines <= faults x
processes + 1 (each worker sees each fault and says so once; the one line more allows for a
heartbeat judged late on a loaded machine); the gone rows end with one line per process (exit
75) within the heartbeat interval + --reconnect-timeout + 10 s (a process first meets the
outage at its next storage call, at the latest its next heartbeat).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nanonas.storage import open_storage
from nanonas.storage.proxy import Proxy

SERVERS = {
    "postgresql": os.environ.get(
        "NANONAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("NANONAS_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    "redis": os.environ.get("NANONAS_TEST_REDIS", "redis://127.0.0.1:6379/0"),
}
RECONNECT_TIMEOUT = 8
GONE_HEARTBEAT = 3.0  # seconds; the other rows beat every second (a grace period of 2 s)
FLAGS = [
    "--dataset", "synthetic", "--widths", "8", "--batch-size", "64", "--device", "cpu",
    "--epochs", "3", "--sampler", "random",
    "--reconnect-timeout", str(RECONNECT_TIMEOUT), "--no-progress",
]  # fmt: skip
# The request that creates a trial, then the one that commits it (None: one command does both).
CREATE = {
    "postgresql": (b"INSERT INTO trials ", b"COMMIT"),
    "mysql": (b"INSERT INTO trials ", b"COMMIT"),
    "redis": (b'"op_code": 4,', None),  # Optuna's journal operation CREATE_TRIAL
}
CASES = ("drops", "create", "down", "frozen-briefly", "lost", "gone", "gone-workers", "frozen")
GONE = ("gone", "gone-workers", "frozen")
HEADER = (
    "| case | storage | trials asked | finished | extra trials | left RUNNING | exit code "
    "| lines of output | seconds |"
)


def start(
    url: str,
    name: str,
    n_trials: int,
    *,
    workers: int = 1,
    threads: int | None = None,
    heartbeat: float = 1.0,
) -> subprocess.Popen:
    """The CLI on study `name` at `url`, its output captured; `threads`: torch's CPU threads."""
    args = [*FLAGS, "--storage", url, "--study-name", name, "--n-trials", str(n_trials)]
    args += ["--heartbeat-interval", f"{heartbeat:g}"]
    # One folder for all of this run's processes, as machines sharing a study would pass: the
    # default for a database server adds a warning line the cases do not count.
    args += ["--artifacts", os.path.join(tempfile.gettempdir(), "nanonas-faults-artifacts")]
    if workers > 1:
        args += ["--workers", str(workers)]
    return subprocess.Popen(
        [sys.executable, "-m", "nanonas.study", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | ({"OMP_NUM_THREADS": str(threads)} if threads else {}),
    )


@functools.cache
def _reader(url: str) -> optuna.storages.BaseStorage:
    """One storage per server for every direct read of this process. A storage opened per read
    holds its pooled connection until the garbage collector runs (it sits in reference cycles):
    polling every 0.3 s once took PostgreSQL past its 100 clients ("too many clients already")."""
    return open_storage(url)


def count(url: str, name: str) -> tuple[int, int, int, int]:
    """(finished, retries, all trials, left RUNNING or WAITING) of the study, read directly."""
    study = optuna.load_study(study_name=name, storage=_reader(url))
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    retries = sum("retry_history" in t.system_attrs for t in trials)
    left = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    return finished, retries, len(trials), left


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "A new study created" not in line]


def _wait_for_trials(url: str, name: str, n: int, proc: subprocess.Popen) -> None:
    """Until the study has `n` finished trials (read directly), so the fault hits a live run."""
    while proc.poll() is None:
        try:
            if count(url, name)[0] >= n:
                return
        except KeyError:  # not created yet
            pass
        time.sleep(0.3)


def _wait_for_training(url: str, name: str, proc: subprocess.Popen) -> None:
    """Until a trial of `proc` is training (sampled, RUNNING), so that cutting it off loses it."""
    storage = _reader(url)
    while proc.poll() is None:
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if str(t.user_attrs.get("worker", "")).endswith(f":{proc.pid}"):
                return
        time.sleep(0.05)


def _wait_for_running(url: str, name: str, n: int, proc: subprocess.Popen) -> None:
    """Until `n` trials are training (sampled, RUNNING): a storage gone for good then leaves
    each process's trial RUNNING, and its line must name it. (Between two trials a process has
    none running, and its line says that instead.)"""
    storage = _reader(url)
    while proc.poll() is None:
        study = optuna.load_study(study_name=name, storage=storage)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if sum("arch" in t.user_attrs for t in running) >= n:
            return
        time.sleep(0.05)


def _every(seconds: float, times: int, proc: subprocess.Popen, act: Callable[[], bool]) -> int:
    done = 0
    while done < times and proc.poll() is None:
        time.sleep(seconds)
        done += bool(act())
    return done


def run_case(case: str, kind: str, *, n_trials: int = 12) -> dict:
    """One row: the case on the server `kind`."""
    url = SERVERS[kind]
    name = f"faults-{case}-{uuid.uuid4().hex[:8]}"
    proxy = Proxy.for_url(url)
    workers = 2 if case in ("down", "gone-workers") else 1
    began = time.monotonic()
    # Two runs at once get a thread each: oversubscribed cores would slow both many times.
    threads = 1 if case == "lost" else None
    # The gone rows test the end of a run, not staleness: a 2 s grace period was once overrun
    # there on a loaded machine (load average 10 on 2 cores: a worker's beat came 2 s late,
    # the other failed its trial, and each said so in a line the row does not allow).
    heartbeat = GONE_HEARTBEAT if case in GONE else 1.0
    proc = start(
        proxy.url(url), name, n_trials, workers=workers, threads=threads, heartbeat=heartbeat
    )
    others: list[tuple[subprocess.Popen, Proxy]] = []
    faults, fault_at = 0, None
    try:
        if case == "lost":  # a second run on the same study, through a proxy of its own
            second = Proxy.for_url(url)
            _wait_for_trials(url, name, 1, proc)
            others.append((start(second.url(url), name, n_trials, threads=threads), second))
        _wait_for_trials(url, name, 2, proc)
        if case == "lost":
            _wait_for_training(url, name, proc)
        if case in GONE:
            _wait_for_running(url, name, workers, proc)
        fault_at = time.monotonic()
        if case == "drops":
            faults = _every(1.0, 20, proc, lambda: proxy.drop() > 0)
        elif case == "create":
            head, commit = CREATE[kind]
            proxy.cut_reply(after=head, then=commit)
            while proxy.armed and proc.poll() is None:
                time.sleep(0.05)
            faults = int(not proxy.armed)
        elif case in ("down", "lost"):
            proxy.refuse()
            time.sleep(5)
            proxy.resume()
            faults = 1
        elif case == "frozen-briefly":
            proxy.freeze()
            time.sleep(5)
            proxy.resume()
            faults = 1
        elif case in ("gone", "gone-workers"):
            proxy.refuse()
            faults = 1
        elif case == "frozen":
            proxy.freeze()
            faults = 1
        out, err = proc.communicate(timeout=600)
        ended = time.monotonic()
        for other, _ in others:
            other.communicate(timeout=600)
    finally:
        for other, second in others:
            other.kill()
            second.close()
        proc.kill()
        proxy.close()
    finished, retries, total, left = count(url, name)
    asked = n_trials * (1 + len(others))
    gone = case in GONE
    seconds = ended - (fault_at if gone else began)
    lines = _lines(err)
    return {
        "case": case,
        "storage": kind,
        "asked": asked,
        "finished": finished,
        "extra": max(0, total - asked - retries),
        "left": left,
        "code": proc.returncode,
        "lines": len(lines),
        "faults": faults,
        "seconds": seconds,
        "stderr": lines,
        "workers": workers,
        "heartbeat": heartbeat,
        "study": name,
    }


def verdict(row: dict) -> str:
    """'ok', or what misses the target."""
    misses = []
    if row["case"] in GONE:
        if row["code"] != 75 or row["lines"] != row["workers"]:
            misses.append(f"exit {row['code']} with {row['lines']} lines, not 75, one a worker")
        bound = row["heartbeat"] + RECONNECT_TIMEOUT + 10
        if row["seconds"] > bound:
            misses.append(f"{row['seconds']:.0f} s > {bound:g} s")
        return "; ".join(misses) or "ok"
    if row["finished"] != row["asked"]:
        misses.append("not all finished")
    if row["extra"] or row["left"]:
        misses.append("extra or left RUNNING")
    if row["code"] != 0:
        misses.append(f"exit {row['code']}")
    if row["lines"] > row["faults"] * row["workers"] + 1:  # each process sees each fault
        misses.append(f"{row['lines']} lines for {row['faults']} faults")
    return "; ".join(misses) or "ok"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storages", default=",".join(SERVERS), help="comma-separated")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--out", type=Path, help="write the Markdown table here too")
    p.add_argument("--show-output", action="store_true", help="print each run's stderr")
    args = p.parse_args()
    rows = [HEADER + " faults | verdict |", "|---" * 11 + "|"]
    print(rows[0], flush=True)
    for case in args.cases.split(","):
        for kind in args.storages.split(","):
            r = run_case(case, kind, n_trials=args.trials)
            row = (
                f"| {case} | {kind} | {r['asked']} | {r['finished']} | {r['extra']} | {r['left']} "
                f"| {r['code']} | {r['lines']} | {r['seconds']:.1f} | {r['faults']} "
                f"| {verdict(r)} |"
            )
            rows.append(row)
            print(row, flush=True)
            if args.show_output:
                for line in r["stderr"]:
                    print(f"    {line}", flush=True)
    if args.out:
        load = os.getloadavg()
        head = (
            f"# Storage faults\n\n`python benchmarks/faults.py {' '.join(sys.argv[1:])}`\n\n"
            f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, "
            f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
            f"optuna {optuna.__version__}, python {platform.python_version()}\n\n"
        )
        args.out.write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
