"""python -m nanonas.report: one self-contained page per study, written without touching it."""

from __future__ import annotations

import base64
import re
import sqlite3

import optuna
import pytest

from nanonas import records
from nanonas.dashboard import plots
from nanonas.report import cli
from nanonas.study.summary import best_trials


def _dump(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        return list(db.iterdump())


def _report(study: dict, out, capsys) -> str:
    before = _dump(study["storage"])
    code = cli.main(
        ["--storage", study["storage"], "--study-name", study["name"], "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    assert _dump(study["storage"]) == before  # it only reads
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    return (out / "report.html").read_text()


def _rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"<tr class='trial' data-trial='(\d+)'>", page)]


@pytest.mark.parametrize("which", ["dash_single", "dash_pareto"])
def test_the_page_has_the_best_trials_with_pictures_the_plots_and_the_recipe(
    which, request, tmp_path, capsys
):
    made = request.getfixturevalue(which)
    page = _report(made, tmp_path / "r", capsys)
    study = made["study"]
    if len(study.directions) > 1:
        assert sorted(_rows(page)) == sorted(t.number for t in best_trials(study))
    else:  # the 4 trained results, best first; never the over-budget one
        results = [t for t in study.trials if records.trained(t) and t.state.name == "COMPLETE"]
        assert _rows(page) == [
            t.number for t in sorted(results, key=lambda t: (-t.values[0], t.number))
        ]
    pictures = re.findall(r"src='data:image/svg\+xml;base64,([^']+)'", page)
    assert len(pictures) == len(_rows(page))
    for number, data in zip(_rows(page), pictures, strict=True):
        svg = base64.b64decode(data).decode()
        ops = records.architecture(study.trials[number]).ops
        assert svg.startswith("<svg") and all(f"data-op='{op}'" in svg for op in ops)
    for graph_id in plots.FIGURES:
        assert f'id="{graph_id}"' in page
    assert page.count("Plotly.newPlot") == len(plots.FIGURES)
    assert len(re.findall(r"<script[^>]*src=", page)) == 0  # plotly inlined: works offline
    assert "<table id='recipe'>" in page and "<th>epochs</th><td>2</td>" in page
    assert "1 over budget (never trained)" in page
    named = ", ".join(
        f"{n} ({d.name.lower()})" for n, d in zip(study.metric_names, study.directions, strict=True)
    )
    assert f"Objectives: {named}." in page and "val_acc (maximize)" in named


def test_importances_need_enough_results(dash_single, tmp_path, capsys):
    page = _report(dash_single, tmp_path / "r", capsys)
    assert "<table id='importances'>" in page and "<td>block_0</td>" in page
    storage = f"sqlite:///{tmp_path / 'one.db'}"
    one = optuna.create_study(storage=storage, study_name="one")
    first = dash_single["study"].trials[0]
    one.add_trial(
        optuna.trial.create_trial(
            value=first.value,
            params=first.params,
            distributions=first.distributions,
            user_attrs=first.user_attrs,
        )
    )
    page = _report({"storage": storage, "name": "one"}, tmp_path / "r1", capsys)
    assert "Too few trials to estimate importances: 1 within-budget result(s)" in page
    assert _rows(page) == [0]


def test_a_running_study_is_reported_as_it_stands(dash_single, tmp_path, capsys):
    # sqlite's backup copies what the write-ahead log holds too (a file copy would not)
    source = dash_single["storage"].removeprefix("sqlite:///")
    with sqlite3.connect(source) as src, sqlite3.connect(tmp_path / "copy.db") as dst:
        src.backup(dst)
    storage = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.load_study(study_name="single", storage=storage).ask()  # left RUNNING
    page = _report({"storage": storage, "name": "single"}, tmp_path / "r", capsys)
    assert "1 running" in page
    assert optuna.load_study(study_name="single", storage=storage).trials[-1].state.name == (
        "RUNNING"
    )


def test_an_unknown_study_is_one_line_listing_the_studies(dash_single, tmp_path, capsys):
    before = _dump(dash_single["storage"])
    code = cli.main(
        ["--storage", dash_single["storage"], "--study-name", "nope", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [
        f"nanonas: error: unknown study 'nope' in storage {dash_single['storage']!r}; "
        "its studies: single"
    ]
    assert not (tmp_path / "r").exists() and _dump(dash_single["storage"]) == before


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--storage", "nonsense"], "malformed storage URL 'nonsense'"),
        (["--storage", "sqlite:///missing.db"], "missing.db does not exist"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and says in err[0]
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"] or not list(tmp_path.iterdir())


def test_an_unwritable_output_is_one_line(dash_single, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code = cli.main(["--storage", dash_single["storage"], "--out", str(tmp_path / "file" / "r")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"nanonas: error: --out '{tmp_path / 'file' / 'r'}' is not a writable")
