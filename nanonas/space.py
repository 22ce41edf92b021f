"""The NanoNet search space: the op table, the Architecture a trial picks, and how a trial picks it.

A NanoNet has two stages of residual blocks; every block picks one op from `OPS`, and the
base width is the one structural knob. Each block's pick is one categorical Optuna parameter
`block_<i>` whose choices are `OP_NAMES`; the width is the parameter `width`.

The table is data, defined once. Optuna refuses to resume a study whose categorical choices
changed, so the choices of an existing parameter name never change: a different table is a new
`SPACE_VERSION`, recorded in every study (as DARTS versions its PRIMITIVES).

    >>> arch = Architecture.parse("w48:conv3x3,skip,sep_conv3x3,zero/conv3x3,maxpool3x3,skip,zero")
    >>> str(arch) == "w48:conv3x3,skip,sep_conv3x3,zero/conv3x3,maxpool3x3,skip,zero"
    True

A `zero` block computes x + 0 = x and has no weights, so where it sits within its stage does
not change the network: `canonical()` is the network an encoding builds, its zeros moved to
the end of each stage. A stage has 9^4 = 6,561 encodings but 4,681 networks.

    >>> str(Architecture.parse("w48:zero,conv3x3,zero,skip/zero,zero,zero,zero").canonical())
    'w48:conv3x3,skip,zero,zero/zero,zero,zero,zero'
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only sample() sees a trial; importing optuna here would slow every import
    import optuna

__all__ = [
    "BLOCKS_PER_STAGE",
    "DEFAULT_WIDTH",
    "OPS",
    "OP_NAMES",
    "SPACE_VERSION",
    "WIDTHS",
    "canonical",
    "distributions",
    "Architecture",
    "OpSpec",
    "sample",
]

SPACE_VERSION = "v1"


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """What an op computes; `nanonas.model` turns it into a module."""

    kind: str  # conv | sep_conv | dil_conv | max_pool | avg_pool | skip | zero
    kernel: int = 0  # spatial kernel size, 0 for skip/zero
    dilation: int = 1


OPS: dict[str, OpSpec] = {
    "conv3x3": OpSpec("conv", 3),
    "conv5x5": OpSpec("conv", 5),
    "sep_conv3x3": OpSpec("sep_conv", 3),
    "sep_conv5x5": OpSpec("sep_conv", 5),
    "dil_conv3x3": OpSpec("dil_conv", 3, dilation=2),  # a 5x5 receptive field for 3x3 weights
    "maxpool3x3": OpSpec("max_pool", 3),
    "avgpool3x3": OpSpec("avg_pool", 3),
    "skip": OpSpec("skip"),
    "zero": OpSpec("zero"),
}
OP_NAMES: tuple[str, ...] = tuple(OPS)  # the choices of every block_<i>; never reorder in place

BLOCKS_PER_STAGE = 4
WIDTHS: tuple[int, ...] = (24, 32, 48, 64)  # base channels of stage 1; stage 2 has twice as many
# At 48 the median random architecture has about 200K parameters and an all-3x3-conv one 460K:
# the seed's 247K sits in between.
DEFAULT_WIDTH = 48


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One candidate: the op of every block in both stages and the base width.

    Its string form, `w<width>:<stage-1 ops>/<stage-2 ops>`, is what studies store and what
    `parse` reads back.
    """

    stage1: tuple[str, ...]
    stage2: tuple[str, ...]
    width: int = DEFAULT_WIDTH

    def __post_init__(self) -> None:
        for stage in (self.stage1, self.stage2):
            if not isinstance(stage, tuple):
                raise TypeError(f"stages must be tuples of op names, got {stage!r}")
            if len(stage) != BLOCKS_PER_STAGE:
                raise ValueError(
                    f"a stage has {BLOCKS_PER_STAGE} blocks, got {len(stage)}: {stage!r}"
                )
            for op in stage:
                if op not in OPS:
                    raise ValueError(f"unknown op {op!r}; valid ops: {', '.join(OP_NAMES)}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width!r}")

    @property
    def ops(self) -> tuple[str, ...]:
        """Every block's op, stage 1 then stage 2 (the order of the block_<i> parameters)."""
        return self.stage1 + self.stage2

    @classmethod
    def from_ops(cls, ops: tuple[str, ...] | list[str], width: int = DEFAULT_WIDTH) -> Architecture:
        ops = tuple(ops)
        return cls(ops[:BLOCKS_PER_STAGE], ops[BLOCKS_PER_STAGE:], width)

    def __str__(self) -> str:
        return f"w{self.width}:{','.join(self.stage1)}/{','.join(self.stage2)}"

    @classmethod
    def parse(cls, text: str) -> Architecture:
        """Read the string form back; a malformed string raises ValueError naming it."""
        head, sep, body = text.strip().partition(":")
        stages = body.split("/")
        if not sep or not head.startswith("w") or not head[1:].isdigit() or len(stages) != 2:
            raise ValueError(
                f"malformed architecture {text!r}; expected 'w<width>:<op>,<op>,.../<op>,...'"
            )
        stage1, stage2 = (tuple(op.strip() for op in s.split(",")) for s in stages)
        return cls(stage1, stage2, int(head[1:]))

    def canonical(self) -> Architecture:
        """The network this encoding builds, in one encoding shared by every equivalent one:
        each stage's non-zero ops in their order, then its zeros.

        Why this is exact (nanonas.model): every block of a stage maps `channels` to the same
        `channels` at the same resolution and computes x + op(x), and a `zero` block returns x
        unchanged with no weights; the reduction between the stages is not a block, so zeros
        never cross it. Moving a zero keeps the order of the blocks with weights, so even their
        initialisation under one seed is unchanged.
        """
        return Architecture(_zeros_last(self.stage1), _zeros_last(self.stage2), self.width)

    def params(self) -> dict[str, str | int]:
        """The Optuna parameters that `sample` would have suggested for this architecture."""
        return {"width": self.width} | {f"block_{i}": op for i, op in enumerate(self.ops)}


def _zeros_last(stage: tuple[str, ...]) -> tuple[str, ...]:
    kept = tuple(op for op in stage if op != "zero")
    return kept + ("zero",) * (len(stage) - len(kept))


def canonical(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of `Architecture.canonical()` for parameters `sample` suggested: the
    form nanonas's samplers compare proposals by. Other keys pass through unchanged."""
    names = [f"block_{i}" for i in range(2 * BLOCKS_PER_STAGE)]
    ops = [params[n] for n in names]
    stages = (ops[:BLOCKS_PER_STAGE], ops[BLOCKS_PER_STAGE:])
    canon = [op for stage in stages for op in _zeros_last(tuple(stage))]
    return dict(params) | dict(zip(names, canon, strict=True))


def sample(trial: optuna.trial.BaseTrial, *, widths: tuple[int, ...] = WIDTHS) -> Architecture:
    """Ask the trial for one architecture: the width (one of `widths`), then one op per block.

    This is the only function in nanonas that touches a trial's parameters. A study must keep
    one `widths` for its whole life: Optuna refuses changed categorical choices.
    """
    width = trial.suggest_categorical("width", tuple(widths))
    ops = [trial.suggest_categorical(f"block_{i}", OP_NAMES) for i in range(2 * BLOCKS_PER_STAGE)]
    return Architecture.from_ops(ops, width)


def distributions(
    widths: tuple[int, ...] = WIDTHS,
) -> dict[str, optuna.distributions.CategoricalDistribution]:
    """The parameters `sample` suggests, by name: what a sampler needs to know of the space."""
    import optuna.distributions  # here, not at the top: the space itself needs no Optuna

    return {"width": optuna.distributions.CategoricalDistribution(tuple(widths))} | {
        f"block_{i}": optuna.distributions.CategoricalDistribution(OP_NAMES)
        for i in range(2 * BLOCKS_PER_STAGE)
    }
