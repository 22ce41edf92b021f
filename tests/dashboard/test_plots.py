"""nanonas.dashboard.plots: figures drawn from real tiny studies, and the throttled refresher."""

from __future__ import annotations

import optuna
import pytest
from conftest import server

from nanonas import pareto, records
from nanonas.dashboard import plots
from nanonas.space import OP_NAMES
from nanonas.storage import open_storage
from nanonas.storage.proxy import Proxy
from nanonas.study.summary import best_trials


def _segments(fig) -> dict[str, int]:
    """How many gap-separated lines each trace of the curves figure draws."""
    return {trace.name: list(trace.x).count(None) for trace in fig.data}


@pytest.mark.parametrize("which", ["dash_single", "dash_pareto"])
def test_one_curve_per_trained_trial_coloured_by_state_and_none_for_over_budget(which, request):
    study = request.getfixturevalue(which)["study"]
    trials = study.get_trials()
    fig = plots.curves(trials)
    trained = [t for t in trials if records.trained(t)]
    expected = {s: sum(t.state.name == s for t in trained) for s in ("COMPLETE", "PRUNED")}
    assert expected == {"COMPLETE": 4, "PRUNED": 1}  # the fixture's 4 trained, 1 pruned
    assert _segments(fig) == {s.lower(): n for s, n in expected.items()}
    over = [t for t in trials if not plots.feasible(t)]
    assert len(over) == 1
    drawn = {text for trace in fig.data for text in trace.text if text}
    assert f"trial {over[0].number}" not in drawn
    assert max(y for trace in fig.data for y in trace.y if y is not None) <= 1.0


def test_the_curves_are_capped_at_the_latest_trials(dash_single):
    trials = dash_single["study"].get_trials()
    many = [t for t in trials if records.trained(t)] * (plots.MAX_CURVES // 5 + 1)
    fig = plots.curves(many)
    assert sum(_segments(fig).values()) == plots.MAX_CURVES
    assert "the latest 1000 of" in fig.layout.annotations[0].text


@pytest.mark.parametrize("which", ["dash_single", "dash_pareto"])
def test_the_front_is_non_dominated_and_over_budget_trials_are_only_counted(which, request):
    study = request.getfixturevalue(which)["study"]
    trials = study.get_trials()
    fig = plots.pareto_front(study, trials)
    (others, front) = fig.data
    points = [(-y, x) for x, y in zip(others.x, others.y, strict=True)]
    front_points = [(-y, x) for x, y in zip(front.x, front.y, strict=True)]
    assert front_points and len(points) + len(front_points) == 4  # the 4 trained results
    for p in front_points:
        assert not any(pareto.dominates(q, p) for q in points + front_points)
    for p in points:
        assert any(pareto.dominates(q, p) for q in front_points)
    big = next(t for t in trials if not plots.feasible(t))
    assert records.sizes(big)["params"] not in list(others.x) + list(front.x)
    assert 0.0 not in list(others.y) + list(front.y)  # its stored accuracy 0 is not drawn
    assert "1 over-budget trial(s) never trained" in fig.layout.annotations[0].text


@pytest.mark.parametrize("which", ["dash_single", "dash_pareto"])
def test_op_frequency_counts_the_elites_ops_at_every_position(which, request):
    study = request.getfixturevalue(which)["study"]
    trials = study.get_trials()
    elite = plots.elite(study, trials)
    if len(study.directions) > 1:
        assert {t.number for t in elite} == {t.number for t in best_trials(study)}
    else:
        assert [t.number for t in elite] == [best_trials(study)[0].number]  # 4 results: 1
    z = plots.op_frequency(study, trials).data[0].z
    assert len(z) == len(OP_NAMES)
    for position in range(8):
        assert sum(row[position] for row in z) == len(elite)
    for t in elite:
        for position, op in enumerate(records.architecture(t).ops):
            assert z[OP_NAMES.index(op)][position] >= 1


def test_best_so_far_is_the_running_maximum_of_feasible_results(dash_single):
    trials = dash_single["study"].get_trials()
    points, best = plots.best_so_far(trials).data
    results = [t for t in trials if t.state.name == "COMPLETE" and plots.feasible(t)]
    assert list(points.x) == [t.number for t in results]
    assert list(best.y) == [max(t.values[0] for t in results[: i + 1]) for i in range(len(results))]


def _stored(url: str, name: str) -> dict:
    storage = optuna.storages.RDBStorage(url)
    return storage.get_study_system_attrs(storage.get_study_id_from_name(name))


def _saved_ids(attrs: dict) -> set[str]:
    # optuna-dashboard's storage format (dashboard:plot_data:<id>:<chunk>); the browser test
    # checks what a user sees of it.
    prefix = "dashboard:plot_data:"
    return {k[len(prefix) :].rsplit(":", 1)[0] for k in attrs if k.startswith(prefix)}


def test_a_run_saves_every_figure_at_the_end_and_a_save_overwrites(dash_single):
    url, name = dash_single["storage"], dash_single["name"]
    before = _stored(url, name)
    assert _saved_ids(before) == set(plots.FIGURES)
    assert plots.save(optuna.load_study(study_name=name, storage=url))
    after = _stored(url, name)
    assert set(after) == set(before)  # the same ids, overwritten; the pruned trial is new
    curves = "".join(v for k, v in sorted(after.items()) if "nanonas-curves" in k)
    assert '"name":"pruned"' in curves and '"name":"pruned"' not in "".join(
        v for k, v in sorted(before.items()) if "nanonas-curves" in k
    )


class _Clock:
    """A clock that the test moves: a trial takes `trial` seconds, a save `save` seconds."""

    def __init__(self, trial: float, save: float = 0.0) -> None:
        self.now, self.trial, self.save = 0.0, trial, save

    def __call__(self) -> float:
        return self.now


def _run(refresher: plots.Refresher, clock: _Clock, trials: int) -> None:
    for _ in range(trials):
        clock.now += clock.trial
        refresher.trial_done()


def _refresher(clock: _Clock, saved: list | None = None) -> plots.Refresher:
    def save() -> None:
        clock.now += clock.save
        if saved is not None:
            saved.append(clock.now)

    return plots.Refresher(save=save, clock=clock)


def test_the_refresher_saves_every_10_trials_and_at_the_end():
    saved: list[float] = []
    clock = _Clock(trial=10.0, save=0.1)
    refresher = _refresher(clock, saved)
    _run(refresher, clock, 25)
    assert refresher.saves == [10, 20]
    refresher.finish()
    assert refresher.saves == [10, 20, -1] and len(saved) == 3


def test_the_refresher_waits_60_seconds_between_saves():
    clock = _Clock(trial=1.0)  # a trial a second
    refresher = _refresher(clock)
    _run(refresher, clock, 100)
    assert refresher.saves == [10, 70]


def test_a_slow_save_spreads_the_next_ones_to_25_ms_a_trial():
    clock = _Clock(trial=10.0, save=1.0)  # 1 s a save: 40 trials until the next
    refresher = _refresher(clock)
    _run(refresher, clock, 100)
    assert refresher.saves == [10, 50, 90]


def test_the_refresher_refuses_a_bad_setting():
    with pytest.raises(ValueError, match="every must be at least 1, got 0"):
        plots.Refresher(save=lambda: None, every=0)


def test_a_storage_fault_while_saving_is_one_warning_line(tmp_path, capsys):
    url = server("postgresql")
    with Proxy.for_url(url) as proxy:
        storage = open_storage(proxy.url(url))
        study = optuna.create_study(storage=storage, study_name=f"plots-{tmp_path.name}")
        try:
            proxy.refuse()
            assert plots.save(study) is False
        finally:
            proxy.resume()
            optuna.delete_study(study_name=study.study_name, storage=storage)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("nanonas: warning: could not save the study's plots (")
    assert lines[0].endswith("; the run goes on")
