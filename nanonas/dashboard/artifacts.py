"""Where a study's per-trial pictures go, and the upload of each trial's picture and note.

    where = prepare(config.artifacts, config.storage)   # in run(): checked before any trial
    say_where(config.artifacts, config.storage)         # once the storage answered: one warning
    uploads = Uploads(where=where, num_classes=10, in_channels=3, storage=config.storage)
    uploads.picture(trial, arch)        # in the objective, as soon as the trial has its arch
    uploads.note(trial, frozen_trial)   # in the optimize callback, once the trial has ended
    optuna-dashboard sqlite:///nanonas.db --artifact-dir nanonas-artifacts

The folder is `--artifacts DIR`, by default beside an SQLite or journal file (`nanonas.db` ->
`nanonas-artifacts/`), else `./nanonas-artifacts`: a database is shared by machines that each
have their own disk, so the run says once that pictures land on each machine's own disk unless
`--artifacts` names a folder they share. Every process uploads the trials it runs.

The picture is uploaded when the trial starts, not when it ends: optuna-dashboard then shows it
while the trial is RUNNING, and Optuna refuses to attach an artifact to a finished trial anyway
(its record lives in the trial's system attributes, which freeze when the trial ends). The note
is written at the end, when the trial's outcome is known; optuna-dashboard keeps notes in the
study's system attributes, so that works for a finished trial, but `save_note` takes only a live
`optuna.Trial` (or a Study), so the callback passes the trial object the objective ran.

Cost per trial, measured on a 2-core Xeon with SQLite (a loop of 1,000 trials, picture + note):
the picture about 5 ms (1.7 of them drawing); the note 7 ms at 50 trials, 15 ms at 300 and
38 ms at 1,000, since optuna-dashboard 0.21's `save_note` reads all of the study's system
attributes (every trial's note) twice to number the note's version, and its public API has no
cheaper way to write a new trial's first note.

Uploading is a view of the study, never part of its result: any error while drawing, writing the
file or recording it in the storage is one warning line, and the trial and the run go on. Two
exceptions. A storage fault (a dropped or silent connection) is re-raised: callers upload
through their Contact, which retries it like any other write and says the outage in its own one
line. A full disk is the other. Under the folder alone, it is said once and this process
uploads nothing more (each next upload would fail the same way). On the disk that also holds
the study's SQLite or journal file, the upload re-raises it: the study's next write fails there
too, and nanonas.study.run ends the run with its one disk-full line, not with a warning first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import optuna
import optuna_dashboard
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial

from nanonas.dashboard.note import trial_note
from nanonas.dashboard.picture import architecture_svg
from nanonas.errors import ConfigError
from nanonas.space import Architecture
from nanonas.storage.connect import fault
from nanonas.storage.disk import disk_full, file_of
from nanonas.storage.urls import is_sqlite, parse

__all__ = ["DEFAULT_FOLDER", "Uploads", "folder", "prepare", "say_where"]

DEFAULT_FOLDER = "nanonas-artifacts"  # for a database storage, in the working directory


def folder(artifacts: str, storage: str) -> Path:
    """The artifact folder of a run: `artifacts` when given; beside the SQLite database or the
    journal file of `storage` (`<name>-artifacts`); else ./nanonas-artifacts."""
    if artifacts:
        return Path(artifacts)
    path = file_of(storage)
    if path is not None:
        file = Path(path)
        return file.with_name(f"{file.stem}-artifacts")
    return Path(DEFAULT_FOLDER)


def prepare(artifacts: str, storage: str) -> Path:
    """The run's artifact folder, created and checked writable before any trial runs.

    An unwritable folder is a ConfigError naming it (one line, exit status 2). Called once per
    run, by the process that starts it (not by each --workers worker)."""
    where = folder(artifacts, storage)
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=where):  # mkdir succeeds on a read-only folder that exists
            pass
    except OSError as e:
        flag = "--artifacts" if artifacts else "the artifact folder (--artifacts)"
        raise ConfigError(
            f"{flag} {str(where)!r} is not a writable folder ({e.strerror or e}); "
            "pass --artifacts DIR with a folder this user can write"
        ) from None
    return where


def say_where(artifacts: str, storage: str) -> None:
    """One warning line where a database server holds the study and --artifacts was not given:
    machines share the study but not their pictures. Said once the storage has answered, so that
    a storage that cannot be opened is the run's only line."""
    # A database server (not an SQLite file, in memory or not, nor a journal file) is what
    # machines share; their pictures are not shared unless the folder is.
    server = parse(storage).kind != "journal" and not is_sqlite(storage)
    if not artifacts and server:
        _warn(
            f"trial pictures go to {folder(artifacts, storage).resolve()} on this machine; "
            "workers on other machines keep theirs on their own disks unless all pass "
            "--artifacts DIR with a shared folder"
        )


class Uploads:
    """Uploads one picture (at a trial's start) and one note (at its end) per trial into the
    artifact folder and the study's storage; a failure is one warning line, never an error,
    except a storage fault and a full disk that also holds the study's file `storage` (see the
    module docstring)."""

    def __init__(
        self, *, where: Path, num_classes: int, in_channels: int, storage: str = ""
    ) -> None:
        if num_classes < 2 or in_channels < 1:
            raise ValueError(f"bad image shape: {num_classes} classes, {in_channels} channels")
        self.folder = Path(where)
        self._store = FileSystemArtifactStore(self.folder)
        self._shape = {"num_classes": num_classes, "in_channels": in_channels}
        study_file = file_of(storage) if storage else None
        self._study_folder = os.path.dirname(os.path.abspath(study_file)) if study_file else None
        self._full = False  # the folder's disk was full: nothing more is uploaded

    def picture(self, trial: optuna.Trial, arch: Architecture) -> None:
        """Draw `arch` and attach the SVG to the running `trial`."""
        if self._full:
            return
        try:
            svg = architecture_svg(arch, **self._shape)
            # upload_artifact takes a file path; the name is what the dashboard lists.
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / f"trial-{trial.number}-architecture.svg"
                path.write_text(svg, encoding="utf-8")
                upload_artifact(
                    artifact_store=self._store,
                    file_path=str(path),
                    study_or_trial=trial,
                    mimetype="image/svg+xml",
                )
        except Exception as e:  # a picture is never worth a trial: say so and go on
            self._failed(e, f"trial {trial.number}: its architecture picture was not uploaded")

    def note(self, trial: optuna.Trial, finished: FrozenTrial) -> None:
        """Save the Markdown note of `finished` (the record of `trial` once it ended)."""
        if self._full:
            return
        try:
            optuna_dashboard.save_note(trial, trial_note(finished))
        except Exception as e:
            self._failed(e, f"trial {finished.number}: its dashboard note was not saved")

    def _failed(self, error: Exception, what: str) -> None:
        if fault(error) is not None:
            # A storage fault is the storage's, not the picture's: the caller's contact
            # retries it as any other write and says the outage (or ends the run) in its
            # own single line; a warning here would be a second line for one fault.
            raise error
        if disk_full(error) is None:
            _warn(f"{what} ({_why(error)})")
            return
        if self._on_study_disk():
            raise error
        self._full = True
        free = ""
        with contextlib.suppress(OSError):
            free = f" ({shutil.disk_usage(self.folder).free:,} bytes free)"
        _warn(f"{what}: disk full: {self.folder}{free}; this process uploads no more of them")

    def _on_study_disk(self) -> bool:
        """Whether the artifact folder is on the disk that holds the study's own file."""
        if self._study_folder is None:
            return False
        try:
            return os.stat(self.folder).st_dev == os.stat(self._study_folder).st_dev
        except OSError:
            return False


def _why(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    first = lines[0][:200] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _warn(line: str) -> None:
    print(f"nanonas: warning: {line}", file=sys.stderr, flush=True)
