"""The study's own plots: learning curves, Pareto front, op frequency, best so far (plotly).

    figs = figures(study)       # {"nanonas-curves": go.Figure, ...}, from the trial records
    save(study)                 # store them in the study; optuna-dashboard shows them
    refresher = Refresher(save=lambda: save(study))
    refresher.trial_done()      # after every finished trial: saves at most once per 10 and 60 s
    refresher.finish()          # once at the end of the run

Every figure is drawn from the records nanonas writes (nanonas.records), not from Optuna's
intermediate values: a multi-objective study has none (Optuna refuses `report` there), so the
learning curves here are the only place a Pareto study shows them. Over-budget trials never
trained: they have no curve, and their stored accuracy 0 is no result, so they are left out of
every axis and counted in a note on the figure instead.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from nanonas import pareto, records
from nanonas.space import BLOCKS_PER_STAGE, OP_NAMES

__all__ = [
    "FIGURES",
    "MAX_CURVES",
    "Refresher",
    "best_so_far",
    "curves",
    "elite",
    "feasible",
    "figures",
    "op_frequency",
    "pareto_front",
    "save",
]

# graph id -> title; the ids are stable, so each save overwrites the figure it saved before.
FIGURES: dict[str, str] = {
    "nanonas-curves": "Learning curves (validation accuracy per epoch)",
    "nanonas-pareto": "Accuracy vs. size (Pareto front)",
    "nanonas-ops": "Op frequency per block among the best",
    "nanonas-best": "Best accuracy so far",
}
MAX_CURVES = 1000  # more lines than this are a blur on screen and megabytes in the storage
# plotly's default template is 6.5 KB of JSON in every figure: 3 of optuna-dashboard's 2 KB
# attribute chunks, each one storage write, per figure per refresh. This one is 0.2 KB.
_TEMPLATE = go.layout.Template(
    layout={
        "plot_bgcolor": "white",
        "xaxis": {"gridcolor": "#e5e5e5", "linecolor": "#888"},
        "yaxis": {"gridcolor": "#e5e5e5", "linecolor": "#888"},
        "colorway": ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"],
    }
)
_COLOURS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#2ca02c"}


def feasible(trial: FrozenTrial) -> bool:
    """Whether the trial was within the study's budgets (an over-budget one never trained)."""
    return records.read(trial).infeasible is None and all(
        v <= 0 for v in trial.constraints.values()
    )


def _results(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Complete trials that measured their own, within-budget result."""
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and records.trained(t) and feasible(t) and t.values
    ]


def _over_budget(trials: Sequence[FrozenTrial]) -> int:
    return sum(not feasible(t) for t in trials)


def _note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(
        text=text, xref="paper", yref="paper", x=0, y=1.06, showarrow=False, align="left"
    )


def _hover(trial: FrozenTrial) -> str:
    sizes = records.sizes(trial)
    size = f"{sizes['params']:,} params" if "params" in sizes else ""
    return f"trial {trial.number} {trial.state.name.lower()} {size}<br>{records.arch(trial)}"


def curves(trials: Sequence[FrozenTrial]) -> go.Figure:
    """One line per trial that trained (its own curve), coloured by its state; the latest
    MAX_CURVES only. One trace per state, the trials separated by gaps: thousands of traces
    would stall the browser. optuna-dashboard stores a figure as study attributes of 2 KB each,
    one write apiece, so the hover says only the trial's number (the Pareto plot has its
    architecture) and accuracies are rounded."""
    drawn = [t for t in trials if records.trained(t)]
    shown = sorted(drawn, key=lambda t: t.number)[-MAX_CURVES:]
    fig = go.Figure()
    for state, colour in _COLOURS.items():
        xs: list[int | None] = []
        ys: list[float | None] = []
        text: list[str | None] = []
        for t in shown:
            if t.state.name != state:
                continue
            accuracies = records.curve(t)
            xs += [*range(1, len(accuracies) + 1), None]
            ys += [*(round(a, 4) for a in accuracies), None]
            text += [f"trial {t.number}"] * len(accuracies) + [None]
        if xs:
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    text=text,
                    mode="lines+markers",
                    name=state.lower(),
                    line={"color": colour, "width": 1},
                    marker={"size": 4},
                    opacity=0.7,
                    hovertemplate="%{text}<br>epoch %{x}: %{y:.4f}<extra></extra>",
                )
            )
    if len(shown) < len(drawn):
        _note(fig, f"the latest {len(shown)} of {len(drawn)} trained trials")
    fig.update_layout(title=FIGURES["nanonas-curves"], xaxis_title="epoch", yaxis_title="val_acc")
    return fig


def _size_key(study: optuna.Study) -> str:
    """The size on the x axis: the study's first size objective, else params."""
    names = study.metric_names or []  # val_acc, params, flops (records.METRIC_NAMES)
    return next((n for n in names[1:] if n in records.SIZE_KEYS), "params")


def pareto_front(study: optuna.Study, trials: Sequence[FrozenTrial]) -> go.Figure:
    """Accuracy against size for every within-budget result, its front (higher accuracy,
    smaller size) drawn as a line; the architecture on hover."""
    key = _size_key(study)
    results = [t for t in _results(trials) if key in records.sizes(t)]
    points = [(-t.values[0], float(records.sizes(t)[key])) for t in results]
    on_front = sorted(pareto.front(points), key=lambda i: points[i][1])
    fig = go.Figure()
    for name, chosen, style in (
        ("trials", [t for i, t in enumerate(results) if i not in set(on_front)], {"size": 6}),
        ("Pareto front", [results[i] for i in on_front], {"size": 9, "color": "#d62728"}),
    ):
        fig.add_trace(
            go.Scatter(
                x=[records.sizes(t)[key] for t in chosen],
                y=[t.values[0] for t in chosen],
                text=[_hover(t) for t in chosen],
                mode="lines+markers" if name == "Pareto front" else "markers",
                line={"shape": "hv", "color": "#d62728"},
                marker=style,
                name=name,
                hovertemplate="%{text}<br>%{y:.4f}<extra></extra>",
            )
        )
    skipped = _over_budget(trials)
    if skipped:
        _note(fig, f"{skipped} over-budget trial(s) never trained: not drawn")
    fig.update_layout(title=FIGURES["nanonas-pareto"], xaxis_title=key, yaxis_title="val_acc")
    fig.update_xaxes(type="log")
    return fig


def elite(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials whose ops are counted: the best quarter (at least one) of the within-budget
    results of a single-objective study, or the Pareto set of a multi-objective one."""
    results = _results(trials)
    if len(study.directions) > 1:
        points = [pareto.minimized(t.values, study.directions) for t in results]
        return [results[i] for i in pareto.front(points)]
    ranked = sorted(results, key=lambda t: (-t.values[0], t.number))
    return ranked[: math.ceil(len(ranked) / 4)]


def op_frequency(study: optuna.Study, trials: Sequence[FrozenTrial]) -> go.Figure:
    """How many of the elite trials pick each op at each block position (a heatmap)."""
    chosen = elite(study, trials)
    blocks = 2 * BLOCKS_PER_STAGE
    counts = [[0] * blocks for _ in OP_NAMES]
    for t in chosen:
        for position, op in enumerate(records.architecture(t).ops):
            counts[OP_NAMES.index(op)][position] += 1
    labels = [f"s{1 + i // BLOCKS_PER_STAGE}b{1 + i % BLOCKS_PER_STAGE}" for i in range(blocks)]
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=labels,
            y=list(OP_NAMES),
            colorscale="Blues",
            hovertemplate="%{x} %{y}: %{z}<extra></extra>",
        )
    )
    among = "the Pareto set" if len(study.directions) > 1 else "the best quarter"
    fig.update_layout(
        title=f"{FIGURES['nanonas-ops']} ({among}: {len(chosen)} trials)",
        xaxis_title="block (stage, position)",
        yaxis_title="op",
    )
    return fig


def best_so_far(trials: Sequence[FrozenTrial]) -> go.Figure:
    """Every within-budget result's accuracy by trial number, and the best so far as a step."""
    results = sorted(_results(trials), key=lambda t: t.number)
    best: list[float] = []
    for t in results:
        best.append(max(t.values[0], best[-1]) if best else t.values[0])
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[t.number for t in results],
            y=[t.values[0] for t in results],
            text=[f"trial {t.number}" for t in results],  # short: stored in 2 KB writes
            mode="markers",
            name="trial",
            marker={"size": 5, "opacity": 0.5},
            hovertemplate="%{text}<br>%{y:.4f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[t.number for t in results],
            y=best,
            mode="lines",
            name="best so far",
            line={"shape": "hv"},
        )
    )
    skipped = _over_budget(trials)
    if skipped:
        _note(fig, f"{skipped} over-budget trial(s) never trained: not drawn")
    fig.update_layout(title=FIGURES["nanonas-best"], xaxis_title="trial", yaxis_title="val_acc")
    return fig


def figures(study: optuna.Study) -> dict[str, go.Figure]:
    """Every figure of the study, keyed by its stable graph id (FIGURES)."""
    trials = study.get_trials(deepcopy=False)
    drawn = {
        "nanonas-curves": curves(trials),
        "nanonas-pareto": pareto_front(study, trials),
        "nanonas-ops": op_frequency(study, trials),
        "nanonas-best": best_so_far(trials),
    }
    for fig in drawn.values():
        fig.update_layout(template=_TEMPLATE)
    return drawn


def save(study: optuna.Study) -> bool:
    """Store the figures in the study for optuna-dashboard (same id: overwritten). A fault
    here (a storage outage, a full disk) costs only the plots: one warning line, False."""
    from optuna_dashboard import save_plotly_graph_object

    try:
        for graph_id, fig in figures(study).items():
            save_plotly_graph_object(study, fig, graph_object_id=graph_id)
    except Exception as e:  # any: the plots are a view; the search must go on without them
        print(
            f"nanonas: warning: could not save the study's plots ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); the run goes on",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


class Refresher:
    """Calls `save` after a finished trial at most once per `every` finished trials and at most
    once per `seconds`, so a long study does not flood its storage with figures; `finish`
    saves once more at the end. `clock` is time.monotonic (tests pass a fake one).

    A save costs more as the study grows (every trial is read and drawn; optuna-dashboard
    stores a figure in 2 KB attribute writes), so after a save that took T seconds the next
    waits for at least T / `per_trial` more trials: the refresh never costs a trial more than
    `per_trial` seconds on average, however large the study."""

    def __init__(
        self,
        *,
        save: Callable[[], object],
        every: int = 10,
        seconds: float = 60.0,
        per_trial: float = 0.025,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every!r}")
        if seconds < 0:
            raise ValueError(f"seconds must be at least 0, got {seconds!r}")
        if per_trial <= 0:
            raise ValueError(f"per_trial must be positive, got {per_trial!r}")
        self._save, self._clock = save, clock
        self._every, self._seconds, self._per_trial = every, seconds, per_trial
        self._finished = 0
        self._saved_at_count = 0
        self._saved_at_time = -math.inf
        self._due = every  # finished trials between two saves
        self.saves: list[int] = []  # the finished-trial counts at which it saved (-1: the end)

    def trial_done(self) -> None:
        self._finished += 1
        now = self._clock()
        if (
            self._finished - self._saved_at_count >= self._due
            and now - self._saved_at_time >= self._seconds
        ):
            self._saved_at_count, self._saved_at_time = self._finished, now
            self.saves.append(self._finished)
            self._save()
            cost = self._clock() - now
            self._due = max(self._every, math.ceil(cost / self._per_trial))

    def finish(self) -> None:
        self.saves.append(-1)
        self._save()
