"""What a running study shows: a line per finished trial, and progress bars on a terminal.

    progress = Progress(config)
    study.optimize(objective, callbacks=[progress.trial_done])
    progress.close()

A bar of trials and, under it, a bar of the running trial's epochs, only where one process
writes to a terminal: in a log file they are noise, and N workers' bars would overwrite each
other. The per-trial lines stay (unless --no-progress).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator

import optuna

from nanonas import records, space
from nanonas.study.config import StudyConfig

__all__ = ["Progress", "quiet_optuna_when"]


class Progress:
    """A bar of trials and, under it, a bar of the running trial's epochs; one line per trial."""

    def __init__(
        self, config: StudyConfig, *, n_trials: int | None = None, bars: bool = True
    ) -> None:
        from tqdm.auto import tqdm

        # The bars of one process need a thread lock only. tqdm's default lock also makes a
        # multiprocessing semaphore, which a process ended by os._exit (a storage gone for good)
        # leaves behind, and Python's resource tracker then warns about it at exit.
        tqdm.set_lock(threading.RLock())
        self._tqdm = tqdm
        # `bars` False: a process that only relays others' trials has no epochs to show.
        bars = bars and config.progress and config.workers == 1 and sys.stderr.isatty()
        self.epochs = config.epochs
        self.trials = tqdm(
            total=config.n_trials if n_trials is None else n_trials,
            desc="trials",
            unit="trial",
            position=0,
            disable=not bars,
            dynamic_ncols=True,
        )
        self.epoch_bar = tqdm(
            total=config.epochs,
            desc="epochs",
            unit="ep",
            position=1,
            leave=False,
            disable=not bars,
            dynamic_ncols=True,
        )
        self.lines = config.progress

    def trial_started(self, number: int, arch: space.Architecture) -> None:
        self.epoch_bar.reset(total=self.epochs)
        self.epoch_bar.set_description(f"trial {number}")
        self.epoch_bar.set_postfix_str("")  # not the last trial's accuracy

    def epoch_done(self, epoch: int, acc: float) -> None:
        self.epoch_bar.update(1)
        self.epoch_bar.set_postfix(val_acc=f"{acc:.4f}")

    def trial_done(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.trials.update(1)
        record = records.read(trial)
        line = (
            f"trial {trial.number:>4}  {trial.state.name:<8}  {_accuracy(record)}  "
            f"params {record.params or 0:>9,}  {record.arch}"
        )
        line += "".join(f"  ({why})" for why in records.reasons(trial))
        if self.lines:
            self._tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.epoch_bar.close()
        self.trials.close()


def _accuracy(record: records.TrialRecord) -> str:
    """The accuracy column of a trial's line: an over-budget trial's 0 is no accuracy."""
    if record.infeasible is not None:
        return "over budget"
    return f"acc {record.val_acc[-1]:.4f}" if record.val_acc else "acc      -"


@contextlib.contextmanager
def quiet_optuna_when(handled: Callable[[], bool]) -> Iterator[None]:
    """Drop Optuna's warnings while `handled()` is true: once nanonas has failed a trial itself
    (and says so in its own line), Optuna's "Trial N failed ... because of the following error"
    with its traceback, and "failed with value None", would only repeat it at length.

    Optuna has no public switch for one trial's failure log, and lowering its verbosity would
    hide its other warnings too. So a filter goes on the handlers of Optuna's library logger
    ("optuna", the name its logging docs use) for the duration; tests/study/test_cli.py pins
    that a diverged trial then shows one line."""

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not handled()

    handlers = list(logging.getLogger("optuna").handlers)
    for h in handlers:
        h.addFilter(keep)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(keep)
