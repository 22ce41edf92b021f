from __future__ import annotations

import random

import optuna
import pytest

from nanonas.space import (
    BLOCKS_PER_STAGE,
    OP_NAMES,
    OPS,
    WIDTHS,
    Architecture,
    sample,
)


def test_op_table_has_the_required_ops():
    required = {
        "conv3x3",
        "conv5x5",
        "sep_conv3x3",
        "sep_conv5x5",
        "dil_conv3x3",
        "maxpool3x3",
        "avgpool3x3",
        "skip",
        "zero",
    }
    assert required <= set(OPS)
    assert tuple(OPS) == OP_NAMES


@pytest.mark.parametrize("seed", range(20))
def test_string_form_round_trips(seed):
    rng = random.Random(seed)
    arch = Architecture.from_ops(
        [rng.choice(OP_NAMES) for _ in range(2 * BLOCKS_PER_STAGE)], rng.choice(WIDTHS)
    )
    assert Architecture.parse(str(arch)) == arch
    assert hash(Architecture.parse(str(arch))) == hash(arch)


def test_string_form_is_short_and_readable():
    arch = Architecture(
        ("conv3x3", "skip", "zero", "sep_conv5x5"),
        ("maxpool3x3", "conv5x5", "dil_conv3x3", "avgpool3x3"),
        32,
    )
    assert (
        str(arch) == "w32:conv3x3,skip,zero,sep_conv5x5/maxpool3x3,conv5x5,dil_conv3x3,avgpool3x3"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "conv3x3",
        "w32:conv3x3",
        "x32:a/b",
        "w:conv3x3/skip",
        "w32:" + ",".join(["conv3x3"] * 4) + "/" + ",".join(["bogus"] * 4),
        "w32:conv3x3,skip/conv3x3,skip",
    ],
)
def test_parse_rejects_malformed_strings(text):
    with pytest.raises(ValueError):
        Architecture.parse(text)


def test_unknown_op_error_lists_the_valid_ops():
    with pytest.raises(ValueError, match="valid ops: conv3x3, conv5x5"):
        Architecture(("conv3x3", "conv3x3", "conv3x3", "conv7x7"), ("skip",) * 4)


def test_architecture_is_frozen():
    arch = Architecture(("skip",) * 4, ("zero",) * 4)
    with pytest.raises(AttributeError):
        arch.width = 8


def test_sample_asks_one_categorical_per_block_and_the_width():
    arch = Architecture(
        ("conv3x3", "skip", "zero", "sep_conv5x5"),
        ("maxpool3x3", "conv5x5", "dil_conv3x3", "avgpool3x3"),
        24,
    )
    trial = optuna.trial.FixedTrial(arch.params())
    assert sample(trial) == arch
    assert set(trial.params) == {"width"} | {f"block_{i}" for i in range(8)}


def test_sample_uses_the_op_table_as_choices():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    sample(trial, widths=(8, 16))
    dists = trial.distributions
    assert dists["width"].choices == (8, 16)
    for i in range(2 * BLOCKS_PER_STAGE):
        assert dists[f"block_{i}"].choices == OP_NAMES


def test_sample_rejects_a_fixed_trial_value_outside_the_choices():
    params = Architecture(("skip",) * 4, ("zero",) * 4).params() | {"block_3": "conv9x9"}
    with pytest.raises(ValueError):
        sample(optuna.trial.FixedTrial(params))
