"""Each trial of a study gets its picture and its note in the artifact folder and the storage;
the folder is checked before anything runs; an upload fault never fails a trial."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import optuna
import optuna_dashboard
import pytest
from conftest import TINY, fill, run_cli, server
from optuna.artifacts import get_all_artifact_meta

from nanonas import records
from nanonas.dashboard.artifacts import Uploads, folder, prepare
from nanonas.dashboard.note import trial_note
from nanonas.errors import ConfigError
from nanonas.space import Architecture
from nanonas.storage import disk_full, open_storage
from nanonas.study import StudyConfig, next_steps, open_search, optimize, run

SMALL = Architecture.parse("w4:conv3x3,sep_conv3x3,zero,skip/conv3x3,zero,sep_conv3x3,skip")
SAME = Architecture.parse("w4:conv3x3,zero,sep_conv3x3,skip/conv3x3,sep_conv3x3,skip,zero")
BIG = Architecture.from_ops(["conv5x5"] * 8, 4)  # 8,606 parameters, over the budget below
SVG = "{http://www.w3.org/2000/svg}"


def _config(storage: str, **overrides) -> StudyConfig:
    values = dict(
        dataset="synthetic",
        widths=(4,),
        batch_size=64,
        device="cpu",
        epochs=1,
        n_trials=1,
        storage=storage,
        progress=False,
        objectives=("accuracy", "params"),
        max_params=5000,
    )
    return StudyConfig(**(values | overrides))


def _uploaded(study: optuna.Study, storage, where) -> dict[int, tuple[list[str], str]]:
    """Per trial: the ops its uploaded picture shows, and its note, read back."""
    found = {}
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.trials:
        metas = get_all_artifact_meta(t, storage=storage)
        assert len(metas) == 1, f"trial {t.number}: {metas}"
        assert metas[0].mimetype == "image/svg+xml"
        assert metas[0].filename == f"trial-{t.number}-architecture.svg"
        root = ET.fromstring((where / metas[0].artifact_id).read_text())
        ops = [g.get("data-op") for g in root.iter(f"{SVG}g") if g.get("class") == "block"]
        # optuna_dashboard.get_note reads a note through a live Trial object only.
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        found[t.number] = (ops, optuna_dashboard.get_note(optuna.Trial(study, trial_id)))
    return found


def test_every_trial_gets_one_picture_and_one_note_beside_the_database(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "db").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    url = f"sqlite:///{tmp_path / 'db' / 's.db'}"
    config = _config(url, n_trials=3)
    # A study made by plain Optuna: no metric names yet, and three queued architectures.
    directions = ["maximize", "minimize"]
    made = optuna.create_study(storage=url, study_name=config.name, directions=directions)
    assert made.metric_names is None
    for arch in (SMALL, SAME, BIG):  # trained, the same network again, over budget
        made.enqueue_trial(arch.params())
    run(config)

    assert "trial pictures go to" not in capsys.readouterr().err  # a file storage: no warning
    where = tmp_path / "db" / "s-artifacts"
    assert folder("", url) == where and where.is_dir()
    assert not (tmp_path / "cwd" / "nanonas-artifacts").exists()
    storage = open_storage(url)
    study = optuna.load_study(
        study_name=config.name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    assert study.metric_names == ["val_acc", "params"]
    assert len(list(where.iterdir())) == 3
    uploaded = _uploaded(study, storage, where)
    for t in study.trials:
        ops, note = uploaded[t.number]
        assert ops == list(records.architecture(t).ops)
        assert note == trial_note(t)
    assert "**Reused:** the same network as trial 0" in uploaded[1][1]
    assert "**Infeasible:** over budget (params 8,606 > 5,000)" in uploaded[2][1]
    shown = next_steps(study, url)
    assert f"--artifact-dir {where}" in shown


def test_an_upload_fault_is_one_warning_and_the_trial_goes_on(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "file").write_text("not a folder")
    config = _config(url, artifacts=str(tmp_path / "file"), max_params=None)
    study = optimize(open_search(config, role="main"))  # not run(): it would refuse the folder
    err = capsys.readouterr().err
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    lines = [line for line in err.splitlines() if "picture was not uploaded" in line]
    assert len(lines) == 1 and lines[0].startswith("nanonas: warning: trial 0: ")
    assert "NotADirectoryError" in lines[0]
    # The storage refusing a write is one line too, never an error: a picture for a trial
    # that has ended, a note for a trial whose study is gone.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    gone = optuna.create_study(storage=other, study_name="gone")
    trial = gone.ask()
    gone.tell(trial, 1.0)
    (tmp_path / "art").mkdir()
    uploads = Uploads(where=tmp_path / "art", num_classes=10, in_channels=3)
    uploads.picture(trial, SMALL)
    frozen = gone.trials[0]
    optuna.delete_study(study_name="gone", storage=other)
    uploads.note(trial, frozen)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("nanonas: warning: trial 0: its architecture picture was not upl")
    assert err[1].startswith("nanonas: warning: trial 0: its dashboard note was not saved")


def test_an_unwritable_folder_is_one_line_before_anything(tmp_path):
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "pictures"
    done = run_cli(*TINY, "--artifacts", str(bad), "--storage", "sqlite:///s.db", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"nanonas: error: --artifacts {str(bad)!r} is not a writable folder (Not a directory); "
        "pass --artifacts DIR with a folder this user can write"
    ]
    assert not (tmp_path / "s.db").exists() and done.stdout == ""
    # The default folder beside a journal file, where a file of that name is in the way:
    (tmp_path / "j-artifacts").write_text("x")
    with pytest.raises(ConfigError, match=r"the artifact folder \(--artifacts\) .*j-artifacts"):
        prepare("", str(tmp_path / "j.log"))


def test_a_database_storage_warns_once_and_uses_the_working_directory(
    tmp_path, monkeypatch, capsys
):
    url = server("postgresql")
    monkeypatch.chdir(tmp_path)
    name = f"artifacts-{uuid.uuid4().hex[:8]}"
    try:
        study = run(_config(url, study_name=name, max_params=None))
        err = capsys.readouterr().err
        warned = [line for line in err.splitlines() if "trial pictures go to" in line]
        assert len(warned) == 1 and "--artifacts DIR" in warned[0], err
        assert len(list((tmp_path / "nanonas-artifacts").iterdir())) == 1
        assert "--artifact-dir nanonas-artifacts" in next_steps(study, url)
        explicit = next_steps(study, url, artifacts="/shared/pics")
        assert "--artifact-dir /shared/pics" in explicit
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(url))


def test_each_worker_uploads_its_own_trials(tmp_path):
    journal = str(tmp_path / "s.log")
    config = _config(journal, n_trials=2, workers=2, max_params=None)
    run(config)
    storage = open_storage(journal)
    study = optuna.load_study(
        study_name=config.name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    where = tmp_path / "s-artifacts"
    uploaded = _uploaded(study, storage, where)
    assert len(uploaded) == 2 and len(list(where.iterdir())) == 2
    assert len({records.read(t).worker for t in study.trials}) == 2  # two processes
    for t in study.trials:
        assert uploaded[t.number][1] == trial_note(t)


def test_a_full_disk_under_the_folder_alone_is_one_warning_and_uploads_stop(
    tmp_path, small_disk, capsys
):
    url = f"sqlite:///{tmp_path / 's.db'}"  # the study's file is on another disk
    uploads = Uploads(where=small_disk / "art", num_classes=10, in_channels=3, storage=url)
    (small_disk / "art").mkdir()
    study = optuna.create_study(storage=url, study_name="s")
    fill(small_disk)
    first, second = study.ask(), study.ask()
    uploads.picture(first, SMALL)
    uploads.picture(second, SMALL)
    study.tell(first, 0.5)
    uploads.note(first, study.trials[0])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # said once; each next upload would fail the same way
    assert err[0].startswith("nanonas: warning: trial 0: its architecture picture was not up")
    assert f"disk full: {small_disk / 'art'} (" in err[0] and "uploads no more" in err[0]
    assert optuna_dashboard.get_note(first) == ""  # nothing was tried after the warning
    (small_disk / "filler").unlink()


def test_a_full_disk_that_also_holds_the_study_file_ends_the_trial(tmp_path, small_disk, capsys):
    url = f"sqlite:///{small_disk / 's.db'}"
    trial = optuna.create_study(storage=url, study_name="s").ask()
    uploads = Uploads(where=folder("", url), num_classes=10, in_channels=3, storage=url)
    prepare("", url)
    fill(small_disk)
    with pytest.raises(OSError) as raised:  # nanonas.study.run says the full disk in one line
        uploads.picture(trial, SMALL)
    assert disk_full(raised.value) is not None
    assert capsys.readouterr().err == ""  # no warning before the run's line
    (small_disk / "filler").unlink()
