from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nanonas.pruning import FLAVOURS, EpochPruner


def _trials(*specs: tuple[list[float], int], state=TrialState.COMPLETE, reused=()):
    """Finished trials numbered 0, 1, ... with these (val_acc curve, params)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, (curve, params) in enumerate(specs):
        attrs = {"val_acc": curve, "params": params}
        if i in reused:
            attrs["reused_from"] = 0
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=[curve[-1], params] if state == TrialState.COMPLETE else None,
                user_attrs=attrs,
            )
        )
    return study.get_trials(deepcopy=False)


# Five finished peers of 1,000 parameters whose epoch-2 accuracies have median 0.6.
PEERS = [([0.3, acc, acc + 0.1], 1000) for acc in (0.4, 0.5, 0.6, 0.7, 0.8)]


def _median(**kw) -> EpochPruner:
    return EpochPruner("median", max_epochs=3, n_startup=5, warmup_epochs=2, **kw)


def test_median_prunes_below_the_peers_median_from_the_warmup_epoch_on():
    trials = _trials(*PEERS)
    pruner = _median()
    sizes = {"params": 1000}
    assert pruner.prune_reason(trials, number=99, curve=[0.1], sizes=sizes) is None  # warm-up
    reason = pruner.prune_reason(trials, number=99, curve=[0.1, 0.55], sizes=sizes)
    assert reason is not None and "median 0.6000 of 5 peers" in reason
    assert pruner.prune_reason(trials, number=99, curve=[0.1, 0.65], sizes=sizes) is None
    # the best accuracy so far counts, as in Optuna's MedianPruner
    assert pruner.prune_reason(trials, number=99, curve=[0.62, 0.5], sizes=sizes) is None


def test_median_waits_for_enough_peers_and_never_stops_the_last_epoch():
    pruner = _median()
    sizes = {"params": 1000}
    assert pruner.prune_reason(_trials(*PEERS[:4]), number=99, curve=[0, 0], sizes=sizes) is None
    assert pruner.prune_reason(_trials(*PEERS), number=99, curve=[0, 0, 0], sizes=sizes) is None


def test_a_small_network_is_judged_only_against_networks_no_larger():
    trials = _trials(*PEERS)
    pareto = _median(size_keys=("params",))
    weak = [0.1, 0.2]
    # Every peer is larger: the small network may still be Pareto-optimal, so it goes on.
    assert pareto.prune_reason(trials, number=99, curve=weak, sizes={"params": 500}) is None
    # The same curve on a network at least as large as the peers is on its way to be dominated.
    assert pareto.prune_reason(trials, number=99, curve=weak, sizes={"params": 1000}) is not None
    # Single-objective (no size keys): every trial is a peer.
    assert _median().prune_reason(trials, number=99, curve=weak, sizes={"params": 500})


def test_reused_duplicates_and_the_trial_itself_are_not_peers():
    trials = _trials(*PEERS, reused=(4,))
    pruner = _median()
    assert pruner.prune_reason(trials, number=99, curve=[0, 0], sizes={"params": 1}) is None
    assert pruner.prune_reason(trials, number=3, curve=[0, 0], sizes={"params": 1}) is None


def test_running_trials_are_not_median_peers_but_compete_at_a_rung():
    running = _trials(*PEERS, state=TrialState.RUNNING)
    assert _median().prune_reason(running, number=99, curve=[0, 0], sizes={"params": 1}) is None
    sha = EpochPruner("sha", max_epochs=9)
    assert sha.prune_reason(running, number=99, curve=[0.0], sizes={"params": 1}) is not None


def test_successive_halving_keeps_the_top_third_at_rung_epochs_only():
    trials = _trials(*[([acc, acc, acc, acc], 1000) for acc in (0.1, 0.2, 0.3, 0.4, 0.5)])
    sha = EpochPruner("sha", max_epochs=9, min_epochs=1, reduction_factor=3)
    sizes = {"params": 1000}
    # 6 competitors at rung epoch 1 (5 peers + this trial): the top 2 go on.
    assert sha.prune_reason(trials, number=99, curve=[0.45], sizes=sizes) is None
    reason = sha.prune_reason(trials, number=99, curve=[0.35], sizes=sizes)
    assert "outside the top 2 of 6" in reason
    assert sha.prune_reason(trials, number=99, curve=[0.9, 0.0], sizes=sizes) is None  # no rung
    assert sha.prune_reason(trials, number=99, curve=[0.9, 0.9, 0.0], sizes=sizes)  # rung 3


def test_hyperband_brackets_start_pruning_at_later_rungs():
    hb = EpochPruner("hyperband", max_epochs=10, min_epochs=1, reduction_factor=3)
    assert hb.n_brackets == 3  # rungs 1, 3, 9 fit in 10 epochs
    specs = [([0.5, 0.5, 0.5], 1000)] * 12  # trials 0..11: four in each bracket
    trials = _trials(*specs)
    sizes = {"params": 1000}
    # trial 12 is in bracket 0 and prunes at epoch 1; trial 13 (bracket 1) waits for epoch 3.
    assert hb.prune_reason(trials, number=12, curve=[0.1], sizes=sizes) is not None
    assert hb.prune_reason(trials, number=13, curve=[0.1], sizes=sizes) is None
    assert hb.prune_reason(trials, number=13, curve=[0.1, 0.1, 0.1], sizes=sizes) is not None


def test_none_never_prunes_and_unknown_flavours_list_the_valid_ones():
    trials = _trials(*PEERS)
    assert EpochPruner("none").prune_reason(trials, number=9, curve=[0, 0], sizes={}) is None
    with pytest.raises(ValueError, match="unknown pruner 'mediam'; valid: " + ", ".join(FLAVOURS)):
        EpochPruner("mediam")


@pytest.mark.parametrize(
    ("flavour", "epochs"),
    [("median", [2, 3, 4, 5]), ("sha", [1, 3]), ("hyperband", [1, 3]), ("none", [])],
)
def test_judges_exactly_the_epochs_where_pruning_is_possible(flavour, epochs):
    pruner = EpochPruner(flavour, max_epochs=6, warmup_epochs=2)
    assert [e for e in range(1, 7) if pruner.judges(e)] == epochs
