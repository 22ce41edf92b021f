"""One trial: sample an architecture, check its budget, look for a duplicate, train, record.

    objective = Objective(config, train_set, val_set, progress=progress, run="run:...")
    study.optimize(objective, n_trials=10)

The only code here that touches Optuna's trial is `space.sample` (the parameters) and the
records helpers (its attributes); the network and the training are plain functions. In order:

1. `space.sample(trial)` picks the width and one op per block.
2. Its parameters and FLOPs are counted without allocating weights, and recorded.
3. Over a budget (--max-params, --max-flops)? Never trained: it ends COMPLETE with accuracy 0,
   and its constraints (`trial.set_constraint`) tell the sampler why.
4. Trained before? A finished trial of the same network lends its result (`reused_from`): a
   COMPLETE one its values, a PRUNED one its pruning. "Same" is the canonical form
   (`Architecture.canonical`): encodings that differ only in where a stage's zeros sit build
   one network, so a sequential run never trains a network twice.
5. Trained: every epoch records the accuracy curve, reports it (single-objective studies) and
   asks nanonas.pruning whether to stop. A NaN loss or an out-of-memory error fails the trial
   with its reason; the study goes on.
6. Interrupted (Ctrl-C, SIGTERM) anywhere in it: the trial gets its fail reason "interrupted
   (SIGINT)" or "(SIGTERM)" before Optuna tells it FAIL; nanonas.study.run re-queues it.

Storage faults: the trial's first heartbeat is written before anything else. Every read and
every attribute write after sampling only sets a value, so with a `contact` it is retried until
the storage answers (nanonas.storage.contact). Sampling is not retried (a suggestion that was
stored but not answered would be drawn again); a fault there, or finding the trial already
failed by another worker, raises StorageLost, which nanonas.study.run settles.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import torch

from nanonas import data, records, space
from nanonas.dashboard.artifacts import Uploads
from nanonas.errors import DivergedError
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.pruning import EpochPruner
from nanonas.storage import Contact, disk_full, fault
from nanonas.study.config import StudyConfig
from nanonas.study.progress import Progress
from nanonas.train import train

__all__ = ["Objective", "StorageLost", "interrupted_reason"]

T = TypeVar("T")


class StorageLost(BaseException):
    """The storage failed where a retry is not safe, or the trial was failed by another worker
    while this one was cut off. A BaseException, so that `study.optimize` neither catches it nor
    tells the trial: nanonas.study.run settles it once the storage answers."""


def interrupted_reason(error: KeyboardInterrupt) -> str:
    """The fail reason of a trial that `error` interrupted: "interrupted (SIGTERM)", or SIGINT
    for a plain KeyboardInterrupt (Ctrl-C where nanonas installed no handler)."""
    signum = getattr(error, "signum", signal.SIGINT)
    return f"interrupted ({signal.Signals(signum).name})"


def _worker() -> str:
    """Which process on which machine ran a trial (worker processes are forks or spawns)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Objective:
    """Samples an architecture and trains it unless it is over budget or was trained before;
    records what it measured in the trial's attributes (nanonas.records)."""

    def __init__(
        self,
        config: StudyConfig,
        train_set: data.ImageData,
        val_set: data.ImageData,
        *,
        progress: Progress,
        run: str,
        contact: Contact | None = None,
        uploads: Uploads | None = None,
    ) -> None:
        self.config = config
        self.train_set = train_set
        self.val_set = val_set
        self.progress = progress
        self.run = run  # the key of this process's run entry in the study
        self.contact = contact
        self.uploads = uploads  # the dashboard's picture of each trial, if any
        # What nanonas.study.run needs to settle a trial after a fault: the trial in flight and,
        # once known, what it is to be told: ("values", v), ("pruned", why) or ("failed", why).
        self.trial: optuna.Trial | None = None
        self.outcome: tuple[str, Any] | None = None
        # nanonas prunes by itself, from the stored curves: Optuna's pruners cannot judge a
        # trial in a multi-objective study. Median waits for 5 finished peers and judges from
        # epoch 2 on (epoch-1 accuracy says little); sha and hyperband rungs start at epoch 1.
        # In a Pareto study a trial's peers are the trials no larger than it.
        self.pruner = EpochPruner(
            config.pruner, max_epochs=config.epochs, size_keys=config.objectives[1:]
        )

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        self.trial, self.outcome = trial, None
        try:
            self._store(lambda: records.write_alive(trial, time.time()))
            try:
                arch = space.sample(trial, widths=self.config.widths)
            except Exception as e:
                if fault(e) is None:
                    raise
                raise StorageLost(f"sampling trial {trial.number}") from e
            result = self._measure(trial, arch)
        except KeyboardInterrupt as e:
            # Ctrl-C or SIGTERM (nanonas.workers.Interrupted): the reason is written before
            # Optuna tells the trial FAIL and re-raises; nanonas.study.run then re-queues it.
            reason = interrupted_reason(e)
            if self.outcome is None or self.outcome[0] != "failed":
                self.outcome = ("failed", reason)
                with contextlib.suppress(Exception):  # the interrupt must reach the caller
                    self._store(lambda: records.write_failure(trial, reason))
            raise
        self.outcome = ("values", result)
        return result

    @property
    def handled(self) -> bool:
        """Whether the trial in flight ended in a way nanonas handles and says itself (diverged,
        out of memory, interrupted): Optuna's own warning about it is then noise."""
        return self.outcome is not None and self.outcome[0] == "failed"

    def _store(self, call: Callable[[], T]) -> T:
        """A storage read or a write that sets a value: retried through the contact."""
        try:
            return self.contact.retry(call) if self.contact is not None else call()
        except optuna.exceptions.UpdateFinishedTrialError as e:
            raise StorageLost("the trial was finished elsewhere") from e
        except Exception as e:
            if disk_full(e) is not None and self.outcome is None and self.trial is not None:
                # Before Optuna tells the FAIL, where the storage still takes a small write;
                # nanonas.study.run then ends the run in one line.
                self.outcome = ("failed", "disk full")
                with contextlib.suppress(Exception):
                    records.write_failure(self.trial, "disk full")
            raise

    def _measure(self, trial: optuna.Trial, arch: space.Architecture) -> Any:
        cfg = self.config
        shape = dict(
            num_classes=self.train_set.num_classes, in_channels=self.train_set.images.shape[1]
        )
        with torch.device("meta"):  # parameter count without allocating the weights
            params = count_params(NanoNet(arch, **shape))
        flops = count_flops(arch, image_size=self.train_set.image_size, **shape)
        sizes = {"params": params, "flops": flops}  # as the size objectives are named
        seed = cfg.seed + trial.number
        self._store(
            lambda: records.write_candidate(
                trial,
                arch=arch,
                params=params,
                flops=flops,
                worker=_worker(),
                run=self.run,
                seed=seed,
            )
        )
        if self.uploads is not None:  # now, so that the dashboard shows a RUNNING trial's picture
            # It raises only for a storage fault (retried through _store, like any write) and a
            # full disk under the study's own file (_store fails the trial "disk full").
            uploads = self.uploads
            self._store(lambda: uploads.picture(trial, arch))

        # Every trial of a budgeted study carries the constraints (<= 0: within budget), so the
        # sampler learns from the feasible trials too. An over-budget network is never trained.
        # optuna-dashboard 0.21 reads the old `constraints` system attr, while Optuna 5 writes
        # `constraints:<key>`, so the dashboard does not see these; nanonas does not write
        # private system attrs. It shows the `infeasible` user attr and the trial's note.
        over = []
        for key, limit in cfg.budgets.items():
            self._store(
                lambda key=key, limit=limit: trial.set_constraint(key, float(sizes[key] - limit))
            )
            if sizes[key] > limit:
                over.append(f"{key} {sizes[key]:,} > {limit:,}")
        if over:
            why = f"over budget ({', '.join(over)}); not trained"
            self._store(lambda: records.write_infeasible(trial, why))
            return records.values(0.0, sizes, cfg.objectives)

        canon = str(arch.canonical())
        original = self._store(lambda: self._trained_before(trial, canon))
        if original is not None:
            return self._reuse(trial, original)
        return self._train(trial, arch, sizes, seed)

    def _train(
        self, trial: optuna.Trial, arch: space.Architecture, sizes: dict[str, int], seed: int
    ) -> float | tuple[float, ...]:
        cfg = self.config
        curve: list[float] = []

        def on_epoch(epoch: int, acc: float) -> None:
            curve.append(acc)
            self._store(lambda: records.write_curve(trial, curve))
            self.progress.epoch_done(epoch, acc)
            if not cfg.multi_objective:  # Optuna keeps (and plots) reports of one objective only
                self._store(lambda: trial.report(acc, epoch))
            if not self.pruner.judges(epoch):
                return
            trials = self._store(lambda: trial.study.get_trials(deepcopy=False))
            reason = self.pruner.prune_reason(trials, number=trial.number, curve=curve, sizes=sizes)
            if reason is not None:
                self._store(lambda: records.write_pruned(trial, reason))
                self.outcome = ("pruned", reason)
                raise optuna.TrialPruned(reason)

        self.progress.trial_started(trial.number, arch)
        start = time.perf_counter()
        try:
            history = train(
                arch,
                cfg.training(seed=seed),
                train_set=self.train_set,
                val_set=self.val_set,
                on_epoch=on_epoch,
            )
        except (DivergedError, torch.OutOfMemoryError) as e:
            reason = str(e).splitlines()[0] if isinstance(e, DivergedError) else "out of memory"
            self._store(lambda: records.write_failure(trial, reason))
            self.outcome = ("failed", reason)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        finally:
            seconds = time.perf_counter() - start
            device = str(self.train_set.images.device)
            self._store(lambda: records.write_training(trial, seconds=seconds, device=device))
        return records.values(history.val_acc[-1], sizes, cfg.objectives)

    @staticmethod
    def _trained_before(trial: optuna.Trial, canonical: str) -> optuna.trial.FrozenTrial | None:
        """The first finished trial that trained the network of this canonical form, if any.
        (Two workers may still train one network at once; the second then trains it again.)"""
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        for other in trial.study.get_trials(deepcopy=False, states=states):
            if records.canonical(other) == canonical and records.trained(other):
                return other
        return None

    def _reuse(
        self, trial: optuna.Trial, original: optuna.trial.FrozenTrial
    ) -> float | tuple[float, ...]:
        """Give the trial the result of `original`, an earlier trial of the same network."""
        self._store(lambda: records.write_reuse(trial, original))
        if original.state == optuna.trial.TrialState.PRUNED:
            reason = f"same network as trial {original.number}, which was pruned"
            self._store(lambda: records.write_pruned(trial, reason))
            self.outcome = ("pruned", reason)
            raise optuna.TrialPruned(reason)
        return original.value if not self.config.multi_objective else tuple(original.values)
