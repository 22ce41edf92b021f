"""What a study found: its best trial, or its Pareto set, and the table printed at the end of a run.

    print(summary(study))          # the end-of-run report of `python -m nanonas.study`
    print(next_steps(study, url))  # the optuna-dashboard and nanonas.export commands to run next
    best_trials(study)             # [the best trial], or the Pareto set of a multi-objective study

Only trained, within-budget trials count: an over-budget trial's accuracy 0 is no result, and a
duplicate that reused another trial's result is left out, since its original is there.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import optuna

from nanonas import pareto, records
from nanonas.dashboard.artifacts import folder
from nanonas.storage import check_url, mask

__all__ = ["best_trials", "format_table", "next_steps", "summary"]


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial of a single-objective study (of several tied on accuracy, the smallest),
    or the Pareto set (by accuracy) of a multi-objective one, over trained, within-budget
    trials; empty when no such trial has completed."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    trained = [
        t for t in complete if records.trained(t) and all(v <= 0 for v in t.constraints.values())
    ]
    points = [pareto.minimized(t.values, study.directions) for t in trained]
    if len(study.directions) == 1:
        # One best trial even when several tie on accuracy (small validation sets make ties
        # common): the smallest network among them, then the earliest.
        ranked = sorted(
            range(len(trained)),
            key=lambda i: (points[i][0], records.size(trained[i], "params"), trained[i].number),
        )
        return [trained[i] for i in ranked[:1]]
    front = sorted(pareto.front(points), key=lambda i: (points[i][0], trained[i].number))
    return [trained[i] for i in front]


def format_table(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    """Trials as a table: number, accuracy, size, epochs trained, seconds, architecture."""
    rows = [("trial", "val_acc", "params", "MFLOPs", "epochs", "seconds", "architecture")]
    for t in trials:
        r = records.read(t)
        # Any trial may be shown: an over-budget one has no accuracy, only its placeholder 0.
        acc = f"{r.val_acc[-1]:.4f}" if r.val_acc else "-"
        rows.append(
            (
                str(r.number),
                "over budget" if r.infeasible is not None else acc,
                "-" if r.params is None else f"{r.params:,}",
                "-" if r.flops is None else f"{r.flops / 1e6:.1f}",
                str(len(r.val_acc)),
                "-" if r.train_seconds is None else f"{r.train_seconds:.1f}",
                str(r.arch),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i < 6 else c for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def summary(study: optuna.Study) -> str:
    """How many trials ended how, then the best trial or the Pareto set as a table."""
    best = best_trials(study)
    trials = [records.read(t) for t in study.get_trials(deepcopy=False)]
    states = [r.state for r in trials]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    reused = sum(r.reused_from is not None for r in trials)
    infeasible = sum(r.infeasible is not None for r in trials)
    extra = "".join(
        f"; {n} {what}"
        for n, what in ((reused, "reused a duplicate's result"), (infeasible, "over budget"))
        if n
    )
    head = f"study {study.study_name!r}: {len(states)} trials ({counts}{extra})"
    if not best:
        return f"{head}\nno trained trial within budget has completed yet"
    title = "best trial" if len(study.directions) == 1 else "Pareto set"
    return f"{head}\n{title}:\n{format_table(best)}"


def next_steps(study: optuna.Study, storage: str, *, artifacts: str = "") -> str:
    """The commands to run next: the dashboard on this storage, with the run's artifact folder
    (`artifacts` as --artifacts gave it: "" is the default folder), and the export of the best
    trial (of a Pareto set, the most accurate; a budget picks another, see nanonas.export).

    The URL is the one nanonas opened, with its driver written out (postgresql+psycopg2://...):
    optuna-dashboard does not rewrite URLs, and a bare postgresql:// there would ask for
    psycopg 3, which nanonas does not install. A password is shown as ***: type it in.
    """
    url = mask(check_url(storage))
    shown = shlex.quote(url)
    where = shlex.quote(str(folder(artifacts, storage)))
    lines = [
        "next:",
        f"  optuna-dashboard {shown} --artifact-dir {where}    # browse the trials, their "
        "architectures, curves, Pareto front",
    ]
    best = best_trials(study)
    if best:
        top = max(best, key=lambda t: t.values[0])
        lines.append(
            f"  python -m nanonas.export --storage {shown} --study-name "
            f"{shlex.quote(study.study_name)} --trial "
            f"{top.number}    # retrain it, test it once, save it"
        )
    return "\n".join(lines)
