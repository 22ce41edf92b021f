"""One study as one self-contained HTML page: best trials with pictures, plots, importances, recipe.

    path = write_report(storage="sqlite:///nanonas.db", study_name=None, out=None)
    python -m nanonas.report --study-name s1 --out reports/s1     # the same, from the shell

The page (<out>/report.html) needs no network: plotly's JavaScript is inlined once, and every
architecture picture is an <img> with the SVG as a data URI (inline <svg> elements would share
one id space across pictures). It holds:

- the best trials: a single-objective study's top 10 within-budget results, or the Pareto set;
  each with its accuracy, sizes, epochs and architecture picture (nanonas.dashboard.picture);
- the study's plots (nanonas.dashboard.plots), interactive;
- parameter importances by Optuna's default evaluator, over within-budget results (an
  over-budget trial's stored 0 is no accuracy); a study with too few says so instead;
- the study's recipe and the creating run's settings, as tables.

No PNGs: a PNG of a plotly figure needs kaleido and a headless browser on the machine that
writes the report, and the page's own SVG plots already print and zoom without loss.

It only reads: the study is opened as nanonas.export opens it (a missing SQLite file is refused,
not created), and nothing is written to the storage, so a running study can be reported on.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from html import escape
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nanonas import records
from nanonas.dashboard import plots
from nanonas.dashboard.picture import architecture_svg
from nanonas.errors import ConfigError
from nanonas.export.pick import open_study
from nanonas.study.summary import best_trials

__all__ = ["TOP", "render", "write_report"]

TOP = 10  # trials in a single-objective study's table
# Fewer results than this make importances noise (a random forest over a handful of points).
_MIN_RESULTS = 4
_TOO_FEW = (
    "<p id='too-few'>Too few trials to estimate importances: {} within-budget result(s); "
    f"at least {_MIN_RESULTS} are needed.</p>"
)
_STYLE = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.num{text-align:right}
img.arch{width:230px}code{font-size:90%}
"""


def write_report(*, storage: str, study_name: str | None, out: str | Path | None) -> Path:
    """Write the report of the study into `out` (default report-<study>) and return the path
    of report.html. ConfigError (one line) for an unknown study or an unwritable folder."""
    study = open_study(storage, study_name)
    folder = Path(out) if out is not None else Path(f"report-{_safe(study.study_name)}")
    page = render(study)  # before anything is written: a failure leaves no half folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "report.html"
        path.write_text(page, encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"--out {str(folder)!r} is not a writable folder ({e.strerror or e})"
        ) from None
    return path


def render(study: optuna.Study) -> str:
    """The report page of `study` as an HTML string."""
    trials = study.get_trials(deepcopy=False)
    name = escape(study.study_name)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>nanonas: {name}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Study {name}</h1>",
        f"<p>{escape(_counts(study, trials))}</p>",
        _best_table(study),
        "<h2>Plots</h2>",
        *_plots(study),
        "<h2>Parameter importances</h2>",
        _importances(study, trials),
        "<h2>Recipe</h2>",
        _recipe(study.user_attrs),
        "</body></html>",
    ]
    return "\n".join(parts)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def _counts(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    count = len(study.directions)
    names = study.metric_names or [f"objective {i}" for i in range(count)]
    states = [t.state.name.lower() for t in trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    over = sum(not plots.feasible(t) for t in trials)
    budget = f"; {over} over budget (never trained)" if over else ""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    objectives = ", ".join(
        f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions, strict=True)
    )
    return f"{len(trials)} trials ({counts}{budget}). Objectives: {objectives}. As of {when}."


def _shape(attrs: dict[str, Any]) -> dict[str, int]:
    made = records.recipe(attrs) or {}
    return {
        "num_classes": int(made.get("classes", 10)),
        "in_channels": int(made.get("channels", 3)),
    }


def _top(study: optuna.Study) -> tuple[str, list[FrozenTrial]]:
    if len(study.directions) > 1:
        return "Pareto set", best_trials(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    results = [t for t in complete if records.trained(t) and plots.feasible(t)]
    results.sort(key=lambda t: (-t.values[0], records.size(t, "params"), t.number))
    return f"Best {min(TOP, len(results))} trials", results[:TOP]


def _picture(trial: FrozenTrial, shape: dict[str, int]) -> str:
    svg = architecture_svg(records.architecture(trial), **shape)
    data = base64.b64encode(svg.encode()).decode()
    alt = f"architecture of trial {trial.number}"
    return f"<img class='arch' alt='{alt}' src='data:image/svg+xml;base64,{data}'>"


def _best_table(study: optuna.Study) -> str:
    title, chosen = _top(study)
    if not chosen:
        return f"<h2>{title}</h2><p>No trained trial within budget has completed yet.</p>"
    shape = _shape(study.user_attrs)
    rows = [
        "<tr><th>trial</th><th>val_acc</th><th>params</th><th>MFLOPs</th><th>epochs</th>"
        "<th>seconds</th><th>architecture</th></tr>"
    ]
    for t in chosen:
        r = records.read(t)
        cells = [
            str(r.number),
            f"{t.values[0]:.4f}",
            f"{r.params:,}" if r.params is not None else "",
            f"{r.flops / 1e6:.2f}" if r.flops is not None else "",
            str(len(r.val_acc)),
            f"{r.train_seconds:.1f}" if r.train_seconds is not None else "",
        ]
        tds = "".join(f"<td class='num'>{c}</td>" for c in cells)
        arch = f"<code>{escape(str(r.arch))}</code><br>{_picture(t, shape)}"
        rows.append(f"<tr class='trial' data-trial='{r.number}'>{tds}<td>{arch}</td></tr>")
    return f"<h2>{title}</h2><table id='best'>{''.join(rows)}</table>"


def _plots(study: optuna.Study) -> list[str]:
    out = []
    for i, (graph_id, fig) in enumerate(plots.figures(study).items()):
        html = fig.to_html(
            full_html=False,
            include_plotlyjs=i == 0,  # inlined once: the page must work offline
            div_id=graph_id,
            config={"displaylogo": False},
        )
        out.append(f"<div class='plot'>{html}</div>")
    return out


def _importances(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    """Importances of the parameters for accuracy, over within-budget results only: an
    in-memory copy of those trials is what Optuna's evaluator reads (its public API takes a
    study, and the stored study must not be written to)."""
    results = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and records.trained(t) and plots.feasible(t)
    ]
    if len(results) < _MIN_RESULTS:
        return _TOO_FEW.format(len(results))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory" line
    try:
        copy = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy.add_trials(
        optuna.trial.create_trial(value=t.values[0], params=t.params, distributions=t.distributions)
        for t in results
    )
    try:
        ranked = optuna.importance.get_param_importances(copy)
    except (RuntimeError, ValueError) as e:
        return f"<p>Not available: {escape(str(e).splitlines()[0])} ({len(results)} results)</p>"
    if not ranked:
        return _TOO_FEW.format(len(results))
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td class='num'>{v:.3f}</td></tr>" for k, v in ranked.items()
    )
    return (
        f"<p>For val_acc over {len(results)} within-budget results (Optuna's default "
        f"evaluator).</p><table id='importances'><tr><th>parameter</th><th>importance</th></tr>"
        f"{rows}</table>"
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _table(entries: dict[str, Any], table_id: str) -> str:
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(_value(v))}</td></tr>"
        for k, v in entries.items()
    )
    return f"<table id='{table_id}'>{rows}</table>"


def _recipe(attrs: dict[str, Any]) -> str:
    made, config = records.recipe(attrs), records.study_config(attrs)
    parts = []
    if made:
        parts.append("<p>Fixed at creation; every trial was trained this way.</p>")
        parts.append(_table(made, "recipe"))
    if config:
        parts.append("<h3>Settings of the run that created the study</h3>")
        parts.append(_table(config, "config"))
    return "".join(parts) or "<p>The study has no recorded recipe (not made by nanonas).</p>"
