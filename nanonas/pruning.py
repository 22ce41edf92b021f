"""Epoch pruning that also works in multi-objective (Pareto) studies.

Optuna's `Trial.report` and `should_prune` raise in multi-objective studies, so an accuracy-vs-size
search could not stop a hopeless trial early. nanonas keeps every trial's per-epoch validation
accuracy in its record (`val_acc`, nanonas.records) and decides here, from those curves, whether
the running trial is clearly worse than its peers at the same epoch. The same rule serves
single-objective studies, where it matches Optuna's pruner of the same name.

Peers are what makes it Pareto-aware. A small network that is a little less accurate than a big
one may still be on the Pareto front, so a trial is compared only with trials that are no larger
than it in every size objective of the study (params, flops): it is pruned when those are clearly
more accurate, that is when it is well on its way to being dominated. In a single-objective study
every trial is a peer. Trials that reused another trial's result (duplicates) are not peers, so a
curve is never counted twice.

Flavours, after Optuna's:
- median: from epoch `warmup_epochs` on, once `n_startup` finished peers have reached the epoch,
  prune when the trial's best accuracy so far is below the median of the peers' accuracies at
  that epoch.
- sha (successive halving): at rung epochs 1, 3, 9, ... (`min_epochs` x 3^k), a trial goes on only
  when its accuracy is in the top third of the peers (finished or running) that reached the rung.
- hyperband: successive halving in several brackets that start pruning at different rungs
  (bracket b waits until rung b); a trial's bracket is its number modulo the bracket count, and it
  competes only with peers of its own bracket.
- none: never prune.

How pruned trials feed the samplers: a pruned trial stays PRUNED, with its partial curve and the
reason in `prune_reason`. NSGA-II builds a generation from COMPLETE trials only, so a pruned child
teaches it nothing directly; its generation simply fills up with further children of the same
parents, and only trained candidates ever become parents. nanonas's own samplers (cmaes,
evolution) do use pruned trials: they rank them below every complete trial.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from nanonas import records

__all__ = ["FLAVOURS", "EpochPruner"]

FLAVOURS = ("median", "sha", "hyperband", "none")


@dataclasses.dataclass(frozen=True)
class EpochPruner:
    flavour: str = "median"  # one of FLAVOURS
    max_epochs: int = 10  # epochs a full trial trains (sets hyperband's brackets)
    size_keys: tuple[str, ...] = ()  # sizes a peer must not exceed, e.g. ("params",)
    n_startup: int = 5  # median: finished peers needed at an epoch before it prunes there
    warmup_epochs: int = 2  # median: no pruning before this epoch (epoch-1 accuracy is noise)
    min_epochs: int = 1  # sha/hyperband: the first rung
    reduction_factor: int = 3  # sha/hyperband: keep the top 1/reduction_factor at a rung

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"unknown pruner {self.flavour!r}; valid: {', '.join(FLAVOURS)}")
        for name in ("max_epochs", "n_startup", "warmup_epochs", "min_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {self.reduction_factor}")

    @property
    def n_brackets(self) -> int:
        if self.flavour != "hyperband":
            return 1
        ratio = self.max_epochs / self.min_epochs
        return max(1, math.floor(math.log(ratio, self.reduction_factor) + 1e-9) + 1)

    def judges(self, epoch: int) -> bool:
        """Whether a trial can be pruned after `epoch` at all: where it cannot, nobody needs to
        read the study's trials (a database round trip per worker per epoch)."""
        if self.flavour == "none" or epoch >= self.max_epochs:
            return False
        if self.flavour == "median":
            return epoch >= self.warmup_epochs
        return self._rung(epoch) is not None

    def prune_reason(
        self, trials: Sequence[FrozenTrial], *, number: int, curve: Sequence[float], sizes: dict
    ) -> str | None:
        """Why trial `number`, with accuracies `curve` so far and sizes `sizes` (e.g. params),
        should stop now; None when it should go on. `trials` are the study's trials."""
        epoch = len(curve)
        if self.flavour == "none" or epoch >= self.max_epochs:
            return None
        bracket = number % self.n_brackets
        peers = [
            peer[epoch - 1]
            for t in trials
            if t.number != number
            and self._is_peer(t, sizes, bracket)
            and len(peer := records.curve(t)) >= epoch
            and (self.flavour != "median" or t.state in (TrialState.COMPLETE, TrialState.PRUNED))
        ]
        if self.flavour == "median":
            if epoch < self.warmup_epochs or len(peers) < self.n_startup:
                return None
            median = statistics.median(peers)
            if max(curve) < median:
                return (
                    f"best accuracy {max(curve):.4f} by epoch {epoch} is below the median "
                    f"{median:.4f} of {len(peers)} peers at that epoch"
                )
            return None
        # Successive halving: only at rung epochs; hyperband's bracket b skips its first b rungs.
        rung = self._rung(epoch)
        if rung is None or rung < bracket:
            return None
        competing = sorted([*peers, curve[-1]], reverse=True)
        # As Optuna's SuccessiveHalvingPruner: with fewer than reduction_factor competitors
        # only the best of them goes on, since a trial cannot wait for more to arrive.
        keep = max(1, len(competing) // self.reduction_factor)
        if curve[-1] < competing[keep - 1]:
            return (
                f"accuracy {curve[-1]:.4f} at rung epoch {epoch} is outside the top {keep} of "
                f"{len(competing)} trials there"
            )
        return None

    def _rung(self, epoch: int) -> int | None:
        k, at = 0, self.min_epochs
        while at < epoch:
            k, at = k + 1, at * self.reduction_factor
        return k if at == epoch else None

    def _is_peer(self, trial: FrozenTrial, sizes: dict, bracket: int) -> bool:
        if records.reused_from(trial) is not None or trial.number % self.n_brackets != bracket:
            return False
        return all(records.size(trial, key) <= sizes[key] for key in self.size_keys)
