"""The trial note says why a trial ended as it did and shows its blocks, sizes and curve."""

from __future__ import annotations

import optuna
import pytest
import torch

from nanonas import records
from nanonas.dashboard.note import trial_note
from nanonas.model import NanoNet, count_params
from nanonas.space import Architecture

ARCH = Architecture.parse("w8:conv3x3,skip,sep_conv3x3,zero/conv3x3,maxpool3x3,skip,zero")
SIZES = {"params": 0, "flops": 2_500_000}


def _finished(write, state="complete", value=0.5):
    """A real trial of an in-memory study, recorded by the records helpers, then told."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler())
    trial = study.ask()
    with torch.device("meta"):
        params = count_params(NanoNet(ARCH))
    records.write_candidate(
        trial, arch=ARCH, params=params, flops=SIZES["flops"], worker="h:1", run="r", seed=3
    )
    write(trial)
    if state == "complete":
        study.tell(trial, value)
    elif state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study.trials[-1], params


def _table(note: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in note.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row] for row in rows[1:]]  # without the header


def test_a_trained_trial_shows_its_blocks_sizes_and_curve():
    def trained(trial):
        records.write_curve(trial, [0.25, 0.5, 0.625])
        records.write_training(trial, seconds=4.25, device="cpu")

    frozen, params = _finished(trained, value=0.625)
    note = trial_note(frozen)
    assert note.startswith("### Trial 0: complete")
    rows = _table(note)
    assert [r[3] for r in rows] == list(ARCH.ops)
    assert [r[2] for r in rows] == ["8"] * 4 + ["16"] * 4  # stage 2 has twice the channels
    with torch.device("meta"):
        net = NanoNet(ARCH)
    for row, block in zip(rows, [*net.stage1, *net.stage2], strict=True):
        expected = sum(p.numel() for p in block.parameters())
        assert row[4] == ("no-op" if row[3] == "zero" else f"{expected:,}")
    assert f"{params:,} parameters" in note and "2.5 MFLOPs" in note
    assert "0.2500, 0.5000, 0.6250" in note and "best 0.6250 at epoch 3 of 3" in note
    assert "trained 4.2 s on cpu" in note and "seed 3" in note
    assert "Pruned" not in note and "Infeasible" not in note and "Failed" not in note


@pytest.mark.parametrize(
    "write, state, said",
    [
        (
            lambda t: (records.write_curve(t, [0.1]), records.write_pruned(t, "epoch 1: weak")),
            "pruned",
            "**Pruned:** epoch 1: weak",
        ),
        (lambda t: records.write_failure(t, "loss diverged"), "fail", "**Failed:** loss diverged"),
        (
            lambda t: records.write_infeasible(t, "over budget (params 9 > 1); not trained"),
            "complete",
            "**Infeasible:** over budget (params 9 > 1); not trained",
        ),
    ],
    ids=["pruned", "failed", "infeasible"],
)
def test_the_reason_comes_first(write, state, said):
    frozen, _ = _finished(write, state=state, value=0.0)
    note = trial_note(frozen)
    first = note.splitlines()[2]
    assert first.startswith("> ") and said in first


def test_an_over_budget_trial_is_not_shown_as_a_result():
    frozen, _ = _finished(lambda t: records.write_infeasible(t, "over budget (x); not trained"))
    note = trial_note(frozen)
    assert note.splitlines()[0] == "### Trial 0: over budget (not trained)"
    assert "placeholder, not a result" in note and "none (never trained)" in note


def test_a_reused_trial_names_its_original():
    study = optuna.create_study(direction="maximize")
    original = study.ask()
    records.write_curve(original, [0.4, 0.5])
    study.tell(original, 0.5)
    frozen, _ = _finished(lambda t: records.write_reuse(t, study.trials[0]))
    note = trial_note(frozen)
    assert "reused from trial 0" in note.splitlines()[0]
    assert "**Reused:** the same network as trial 0" in note
    assert "(trial 0's) by epoch" in note and "trained 0.0 s" not in note


def test_a_trial_without_an_architecture_says_so():
    study = optuna.create_study()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    assert "No architecture was recorded" in trial_note(study.trials[0])
