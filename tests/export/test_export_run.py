"""nanonas.export.run and its CLI: retrain, test once, write all or nothing, record the export;
every bad input is one line, exit status 2, nothing written and the study unchanged."""

from __future__ import annotations

import json
import os
import sys

import optuna
import pytest
from PIL import Image
from tiny_export import tiny_config

from nanonas import records
from nanonas.export import cli, load_model
from nanonas.study import best_trials, run


def test_a_study_never_loads_the_test_split(single):
    assert single["loads"], "the spy saw no load at all"
    assert all(call.get("train", True) for call in single["loads"]), single["loads"]


def test_export_writes_every_file_and_the_card_says_what_it_measured(single, exported):
    folder = exported["folder"]
    names = {p.name for p in folder.iterdir()}
    assert names == {"model.pt", "model.pt2", "model.onnx", "card.md", "card.json"}
    card = json.loads((folder / "card.json").read_text())
    best = best_trials(single["study"])[0]
    assert card["trial"] == best.number and card["architecture"] == best.user_attrs["arch"]
    assert card["search_val_acc"] == best.value and card["epochs"] == 1
    assert 0 <= card["test_acc"] <= 1 and 0 <= card["test_acc_flip"] <= 1
    assert card["data"]["train"] == 2000 and card["data"]["test"] == 500  # train + validation
    assert card["params"] == sum(p.numel() for p in exported["model"].parameters())
    for key in ("flops", "seed", "train_seconds", "versions", "study", "recipe"):
        assert key in card
    assert f"{card['test_acc']:.2%}" in (folder / "card.md").read_text()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "temp left"


def test_the_study_records_the_export_and_keeps_its_trial_values(single, exported):
    study = optuna.load_study(study_name=single["name"], storage=single["storage"])
    entries = [
        e
        for e in records.exports(study.user_attrs)
        if e["folder"] == str(exported["folder"].resolve())
    ]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["test_acc"] == exported["model"].test_acc
    assert entry["test_acc_flip"] == exported["model"].card["test_acc_flip"]
    assert entry["epochs"] == 1 and entry["trial"] == exported["model"].card["trial"]
    before = {t.number: t.values for t in single["study"].trials}
    assert {t.number: t.values for t in study.trials} == before


def _refused(capsys, argv, single, out):
    """Run the CLI, expect one line and exit 2, nothing at `out`, the study unchanged."""
    study = optuna.load_study(study_name=single["name"], storage=single["storage"])
    attrs = dict(study.user_attrs)
    code = cli.main(
        [
            "--storage",
            single["storage"],
            "--out",
            str(out),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--no-progress",
            *argv,  # last: a flag given here wins over the defaults above
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("nanonas: error: "), err
    after = optuna.load_study(study_name=single["name"], storage=single["storage"])
    assert after.user_attrs == attrs
    return err[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--study-name", "nope"], "unknown study 'nope' in storage"),
        (["--study-name", "single", "--trial", "99"], "has no trial 99"),
        (["--study-name", "single", "--trial", "{pruned}"], "it was pruned"),
        (["--study-name", "single", "--trial", "{failed}"], "it failed"),
        (["--study-name", "single", "--trial", "{infeasible}"], "over the study's budget"),
        (["--study-name", "single", "--max-params", "10"], "is within --max-params 10"),
        (["--study-name", "single", "--epochs", "0"], "epochs must be a positive integer"),
        (["--study-name", "single", "--trail", "1"], "unrecognized arguments: --trail"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, single, tmp_path, argv, expected):
    argv = [a.format(**single["dead"]) for a in argv]
    out = tmp_path / "out"
    line = _refused(capsys, argv, single, out)
    assert expected in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_existing_output_folder_is_refused_unless_force(capsys, single, exported, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    line = _refused(capsys, ["--study-name", "single"], single, out)
    assert f"output folder {out} exists; pass --force to replace it" in line
    assert (out / "mine.txt").read_text() == "keep"
    code = cli.main(
        [
            "--storage",
            single["storage"],
            "--study-name",
            "single",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--no-progress",
            "--force",
        ]
    )
    assert code == 0
    assert not (out / "mine.txt").exists() and (out / "model.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or old folder left
    assert load_model(out).arch == exported["model"].arch


def test_an_unwritable_output_folder_is_refused(capsys, single, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _refused(capsys, ["--study-name", "single"], single, blocker / "out")
    assert "cannot write in" in line
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        line = _refused(capsys, ["--study-name", "single"], single, locked / "out")
        assert "cannot write in" in line and not list(locked.iterdir())


def test_a_dataset_without_a_test_split_is_refused_before_training(capsys, tmp_path):
    root = tmp_path / "images"
    for c in range(2):
        (root / "train" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (8, 8), (40 * i, 100 * c, 7)).save(
                root / "train" / f"c{c}" / f"{i}.png"
            )
    config = tiny_config(
        tmp_path,
        dataset="imagefolder",
        data_dir=str(root),
        n_trials=1,
        batch_size=8,
        study_name="folder",
    )
    run(config)
    single = {"storage": config.storage, "name": "folder"}
    out = tmp_path / "out"
    line = _refused(capsys, ["--study-name", "folder"], single, out)
    assert "imagefolder has no test split: neither" in line and not out.exists()
    # with a test split, but other training images than the study searched on
    for c in ("c0", "c1"):
        (root / "test" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "test" / c / "0.png")
    Image.new("RGB", (8, 8), (3, 2, 1)).save(root / "train" / "c0" / "new.png")
    line = _refused(capsys, ["--study-name", "folder"], single, out)
    assert "has 25 training images, the study's had 24; pass the --data-dir" in line
    assert not out.exists()


def test_the_cli_exits_2_in_a_real_process(single, tmp_path):
    import subprocess

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nanonas.export",
            "--storage",
            single["storage"],
            "--study-name",
            "nope",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "is a Pareto study: pass --trial N, or --max-params / --max-flops"),
        (["--max-params", "10"], "no member of the Pareto set of study 'pareto' is within"),
    ],
)
def test_a_pareto_study_without_a_budget_or_with_one_none_meets_writes_nothing(
    capsys, pareto, tmp_path, argv, expected
):
    out = tmp_path / "out"
    line = _refused(capsys, ["--study-name", "pareto", *argv], pareto, out)
    assert expected in line and not out.exists()
