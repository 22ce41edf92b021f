"""The trial note: a trial's record as the Markdown that optuna-dashboard shows on its page.

    body = trial_note(frozen_trial)
    optuna_dashboard.save_note(trial, body)   # nanonas.dashboard.artifacts does this per trial

What ended the trial comes first (pruned, failed, reused from trial N, or over budget: a
placeholder accuracy 0 that is no result), then the architecture as a table of blocks, its size,
its accuracy after every epoch, and where and how long it ran. Everything is read through
nanonas.records, so the note says what the trial's attributes say.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from nanonas import records
from nanonas.dashboard.picture import block_params
from nanonas.space import BLOCKS_PER_STAGE

if TYPE_CHECKING:  # the note only reads a trial; importing optuna here would slow the import
    from optuna.trial import FrozenTrial

__all__ = ["trial_note"]

_SPARKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"  # low to high, for 0.0 .. 1.0


def trial_note(trial: FrozenTrial) -> str:
    """The Markdown note of `trial`: why it ended as it did, its blocks, sizes and curve."""
    r = records.read(trial)
    lines = [f"### Trial {r.number}: {_verdict(r)}", ""]
    lines += [f"> {line}" for line in _reasons(r)] + ([""] if _reasons(r) else [])
    if r.arch is None:
        lines.append("No architecture was recorded (the trial ended before sampling it).")
        return "\n".join(lines) + "\n"
    arch = records.architecture(trial)
    lines += [f"`{r.arch}`", ""]
    lines += ["| block | stage | channels | op | params |", "|---:|---:|---:|:---|---:|"]
    counts = block_params(arch)
    for i, (op, count) in enumerate(zip(arch.ops, counts, strict=True)):
        stage = 1 + i // BLOCKS_PER_STAGE
        channels = arch.width * stage
        shown = "no-op" if op == "zero" else f"{count:,}"
        lines.append(f"| {i} | {stage} | {channels} | {op} | {shown} |")
    lines.append("")
    sizes = []
    if r.params is not None:
        sizes.append(f"{r.params:,} parameters")
    if r.flops is not None:
        sizes.append(f"{r.flops / 1e6:,.1f} MFLOPs per image")
    if sizes:
        lines += [f"**Size:** {', '.join(sizes)} (the blocks hold {sum(counts):,})", ""]
    lines += [_curve(r), ""]
    ran = []
    if r.train_seconds is not None and r.reused_from is None:
        ran.append(f"trained {r.train_seconds:.1f} s" + (f" on {r.device}" if r.device else ""))
    if r.worker is not None:
        ran.append(f"by {r.worker}")
    if r.seed is not None:
        ran.append(f"seed {r.seed}")
    if ran:
        lines += [f"**Ran:** {', '.join(ran)}", ""]
    return "\n".join(lines)


def _verdict(r: records.TrialRecord) -> str:
    """One word or two for the heading: what the trial's result is worth."""
    if r.infeasible is not None:
        return "over budget (not trained)"
    if r.reused_from is not None:
        return f"{r.state.lower()}, reused from trial {r.reused_from}"
    return r.state.lower()


def _reasons(r: records.TrialRecord) -> list[str]:
    said = []
    if r.infeasible is not None:
        said.append(
            f"**Infeasible:** {r.infeasible}. Its accuracy 0 is a placeholder, not a result; "
            "nanonas's summaries leave it out."
        )
    if r.reused_from is not None:
        said.append(
            f"**Reused:** the same network as trial {r.reused_from}, whose result it took "
            "instead of training again."
        )
    if r.prune_reason is not None:
        said.append(f"**Pruned:** {r.prune_reason}")
    if r.fail_reason is not None:
        said.append(f"**Failed:** {r.fail_reason}")
    return said


def _curve(r: records.TrialRecord) -> str:
    """The accuracy after each epoch, as a sparkline and the numbers."""
    if not r.val_acc:
        return "**Validation accuracy:** none (never trained)"
    spark = "".join(
        _SPARKS[min(7, max(0, math.floor(a * 8)))] if math.isfinite(a) else "?" for a in r.val_acc
    )
    best = max(range(len(r.val_acc)), key=lambda i: r.val_acc[i])
    numbers = ", ".join(f"{a:.4f}" for a in r.val_acc)
    whose = f" (trial {r.reused_from}'s)" if r.reused_from is not None else ""
    return (
        f"**Validation accuracy{whose} by epoch:** {spark} {numbers}; "
        f"best {r.val_acc[best]:.4f} at epoch {best + 1} of {len(r.val_acc)}"
    )
