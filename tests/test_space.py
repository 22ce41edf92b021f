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
    canonical,
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


def _random_arch(rng: random.Random) -> Architecture:
    return Architecture.from_ops(
        [rng.choice(OP_NAMES) for _ in range(2 * BLOCKS_PER_STAGE)], rng.choice(WIDTHS)
    )


@pytest.mark.parametrize("seed", range(10))
def test_moving_zeros_within_a_stage_keeps_the_canonical_form(seed):
    rng = random.Random(seed)
    arch = _random_arch(rng)
    stages = [list(arch.stage1), list(arch.stage2)]
    for stage in stages:  # a random position for each zero, the other ops kept in order
        kept = [op for op in stage if op != "zero"]
        zeros = len(stage) - len(kept)
        for _ in range(zeros):
            kept.insert(rng.randrange(len(kept) + 1), "zero")
        stage[:] = kept
    moved = Architecture(tuple(stages[0]), tuple(stages[1]), arch.width)
    assert moved.canonical() == arch.canonical()
    assert arch.canonical().canonical() == arch.canonical()
    assert canonical(moved.params()) == arch.canonical().params()


def test_the_canonical_form_is_the_network_the_model_builds():
    """Equivalent encodings compute the same function under one seed's initialisation."""
    torch = pytest.importorskip("torch")
    from nanonas.model import NanoNet

    a = Architecture.parse("w8:zero,conv3x3,zero,sep_conv3x3/skip,zero,maxpool3x3,conv5x5")
    x = torch.randn(2, 3, 16, 16)
    outputs = []
    for arch in (a, a.canonical()):
        torch.manual_seed(0)
        outputs.append(NanoNet(arch).eval()(x))
    assert torch.equal(outputs[0], outputs[1])


def test_different_networks_have_different_canonical_forms():
    # A stage has 9^4 = 6,561 encodings and sum(8^k, k = 0..4) = 4,681 networks.
    import itertools

    stages = {
        Architecture(s, ("zero",) * 4).canonical()
        for s in itertools.product(OP_NAMES, repeat=BLOCKS_PER_STAGE)
    }
    assert len(stages) == 4_681
    base = Architecture.parse("w48:conv3x3,zero,skip,zero/zero,zero,zero,zero")
    others = [
        "w48:skip,zero,conv3x3,zero/zero,zero,zero,zero",  # order of weighted ops matters
        "w32:conv3x3,zero,skip,zero/zero,zero,zero,zero",  # the width matters
        "w48:conv3x3,zero,zero,zero/skip,zero,zero,zero",  # zeros never cross the reduction
    ]
    assert all(Architecture.parse(o).canonical() != base.canonical() for o in others)


def test_the_canonical_string_form_is_stable():
    arch = Architecture.parse("w48:zero,conv3x3,zero,skip/zero,sep_conv5x5,zero,avgpool3x3")
    # Stored in every trial record: a change here would split old studies' duplicates.
    assert str(arch.canonical()) == "w48:conv3x3,skip,zero,zero/sep_conv5x5,avgpool3x3,zero,zero"
    assert Architecture.parse(str(arch.canonical())) == arch.canonical()
