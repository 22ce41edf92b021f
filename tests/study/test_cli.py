"""nanonas.study.cli: `python -m nanonas.study` as a user runs it, its flags, presets and errors,
and the README's flag table against the parser."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from conftest import TINY, run_cli

from nanonas import data
from nanonas.errors import ConfigError
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.space import SPACE_VERSION, Architecture
from nanonas.study import StudyConfig, cli, config_from_args
from nanonas.study.config import OPTIONS, shown_default
from nanonas.study.presets import presets

ROOT = Path(__file__).resolve().parents[2]


def test_cli_runs_a_real_study_into_sqlite(tmp_path):
    done = run_cli(
        *TINY,
        "--epochs",
        "2",
        "--n-trials",
        "3",
        "--sampler",
        "nsga2",
        "--storage",
        "sqlite:///s.db",
        "--study-name",
        "cli",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "best trial:" in done.stdout and "architecture" in done.stdout
    # what to do next: the dashboard on this storage, the export of the best trial
    assert "\n  optuna-dashboard sqlite:///s.db --artifact-dir s-artifacts    #" in done.stdout
    assert (
        "python -m nanonas.export --storage sqlite:///s.db --study-name cli --trial " in done.stdout
    )

    study = optuna.load_study(study_name="cli", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert len(study.trials) == 3
    full = data.load("synthetic")
    for t in study.trials:
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        a = t.user_attrs
        arch = Architecture.parse(a["arch"])
        assert arch.params() == t.params  # the stored string is the sampled architecture
        assert a["params"] == count_params(NanoNet(arch))
        assert a["flops"] == count_flops(arch, image_size=full.image_size)
        assert len(a["val_acc"]) == 2 and all(0 <= v <= 1 for v in a["val_acc"])
        assert t.value == a["val_acc"][-1]
        assert t.intermediate_values == {1: a["val_acc"][0], 2: a["val_acc"][1]}
        assert a["train_seconds"] > 0 and a["device"] == "cpu"
    attrs = study.user_attrs
    assert attrs["space"]["version"] == SPACE_VERSION
    assert attrs["config"]["sampler"] == "nsga2" and attrs["config"]["epochs"] == 2
    assert attrs["versions"]["optuna"] == optuna.__version__


def test_running_again_resumes_and_adds_new_trials(tmp_path):
    args = [*TINY, "--epochs", "1", "--sampler", "random", "--storage", "sqlite:///s.db"]
    assert run_cli(*args, "--n-trials", "2", cwd=tmp_path).returncode == 0
    done = run_cli(*args, "--n-trials", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(
        study_name="nanonas-synthetic-accuracy", storage=f"sqlite:///{tmp_path / 's.db'}"
    )
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # the resumed run does not replay the first run's seeded proposals
    archs = [t.user_attrs["arch"] for t in study.trials]
    assert archs[2:4] != archs[0:2]


def test_a_resume_with_another_recipe_is_one_line_and_exit_2(tmp_path):
    args = [*TINY, "--epochs", "1", "--n-trials", "1", "--storage", "sqlite:///s.db"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    done = run_cli(*args, "--lr", "0.3", cwd=tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("nanonas: error: study 'nanonas-synthetic-accuracy' was created")
    assert "lr 0.1 (this run: 0.3)" in line and "--study-name" in line


def test_config_file_with_flags_over_it(tmp_path):
    path = ROOT / "nanonas" / "studies" / "quick.toml"
    config = config_from_args(["--config", str(path), "--epochs", "5"])
    assert config.dataset == "synthetic" and config.epochs == 5
    default = config_from_args(
        ["--config", str(ROOT / "nanonas" / "studies" / "cifar10-nsga2.toml")]
    )
    assert default == StudyConfig(sampler="nsga2")  # the defaults, with NSGA-II
    bad = tmp_path / "bad.toml"
    bad.write_text('sampler = "nsga2"\nepoch = 3\n')
    with pytest.raises(ConfigError, match="unknown key 'epoch'.*valid: .*epochs"):
        config_from_args(["--config", str(bad)])


def test_built_in_presets_by_name_and_switches_over_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no studies/ folder here: the presets come from the package
    assert presets() == ["cifar10-nsga2", "cifar10-pareto", "quick"]
    assert config_from_args(["--config", "quick"]) == config_from_args(
        ["--config", str(ROOT / "nanonas" / "studies" / "quick.toml")]
    )
    assert config_from_args(["--config", "cifar10-nsga2"]) == StudyConfig(sampler="nsga2")
    assert config_from_args(["--config", "cifar10-pareto"]).objectives == ("accuracy", "params")
    (tmp_path / "mine.toml").write_text("compile = true\nprogress = false\n")
    assert config_from_args(["--config", "mine.toml"]).compile is True
    flipped = config_from_args(["--config", "mine.toml", "--no-compile", "--progress"])
    assert flipped.compile is False and flipped.progress is True
    with pytest.raises(ConfigError, match="unknown preset 'quik'; built-in: cifar10-nsga2, "):
        config_from_args(["--config", "quik"])


BAD_INPUT = {
    "unknown sampler": (["--sampler", "anneal"], "unknown sampler 'anneal'; valid: nsga2, tpe"),
    "malformed storage": (["--storage", "sqlite:/nowhere.db"], "malformed storage URL"),
    "not a URL": (["--storage", "nanonas.db"], "malformed storage URL 'nanonas.db'"),
    "zero trials": (["--n-trials", "0"], "n-trials must be a positive integer, got 0"),
    "unknown dataset": (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid: cifar10"),
    "unknown objective": (["--objectives", "accuracy,speed"], "unknown objective 'speed'"),
    "accuracy not first": (["--objectives", "params"], "objectives must begin with accuracy"),
    "zero budget": (["--max-params", "0"], "max-params must be a positive integer, got 0"),
    "unknown pruner": (["--pruner", "asha"], "unknown pruner 'asha'; valid: median"),
    "unknown flag": (["--epoch", "3"], "unrecognized arguments: --epoch 3"),
    "not a number": (["--n-trials", "many"], "invalid int value: 'many'"),
    "missing config": (["--config", "nope.toml"], "--config nope.toml: no such file"),
    "unknown preset": (["--config", "nope"], "unknown preset 'nope'; built-in: cifar10-nsga2"),
    "bad fraction": (["--val-fraction", "1.5"], "val-fraction must be between 0 and 1, got 1.5"),
    "bad widths": (["--widths", "8,x"], "widths must be integers"),
    "cifar10 offline": (
        ["--dataset", "cifar10", "--data-dir", "empty"],
        "cifar10 is not in --data-dir empty and could not be downloaded",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_line_a_nonzero_exit_and_no_study(tmp_path, case):
    args, expected = BAD_INPUT[case]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nanonas: error: ") and expected in lines[0]
    assert not list(tmp_path.glob("*.db")), "a study file was created"
    assert not (tmp_path / "empty").exists(), "a data folder was left behind"


def _readme_flag_rows() -> dict[str, tuple[str, list[str]]]:
    """The README's flag table: first flag of a row -> (default, choices in backticks)."""
    rows: dict[str, tuple[str, list[str]]] = {}
    flags_seen: list[str] = []
    # The table under "Every flag (`python -m nanonas.study --help` ...": other tables (the
    # export's) list other flags.
    text = (ROOT / "README.md").read_text()
    table = text.split("Every flag (`python -m nanonas.study --help`", 1)[1].split("\n\n")[1]
    for line in table.splitlines():
        if not line.startswith("| `--"):
            continue
        flag_cell, default, what = (c.strip() for c in line.strip("|").split("|"))
        flags = re.findall(r"`(--[a-z0-9-]+)`", flag_cell)
        flags_seen += flags
        rows[flags[0]] = (default.strip("`"), re.findall(r"`([^`]+)`", what))
        rows[flags[0] + " flags"] = ("", flags)
    rows["all"] = ("", flags_seen)
    return rows


def test_the_readme_flag_table_lists_exactly_the_parsers_flags_defaults_and_choices():
    rows = _readme_flag_rows()
    parser_flags = ["--config"] + [f for name in OPTIONS for f in cli.flags(name)]
    assert sorted(rows["all"][1]) == sorted(parser_flags), "README flags differ from the parser's"
    help_text = cli.parser().format_help()
    for name, option in OPTIONS.items():
        flags = cli.flags(name)
        assert rows[flags[0] + " flags"][1] == flags
        default, choices = rows[flags[0]]
        assert default == shown_default(name), f"{flags[0]}: README default {default!r}"
        if option.choices:
            assert choices == list(option.choices), f"{flags[0]}: README choices {choices}"
        for flag in flags:
            assert flag in help_text
    assert rows["--config"][1] == presets()  # the built-in presets, in the README's row


def test_every_flag_parses_into_its_field():
    values = {
        "sampler": "cmaes",
        "pruner": "sha",
        "objectives": "accuracy,flops",
        "max_params": "100000",
        "max_flops": "5000000",
        "storage": "sqlite:///x.db",
        "artifacts": "pics",
        "study_name": "s",
        "n_trials": "7",
        "timeout": "60.5",
        "epochs": "3",
        "dataset": "synthetic",
        "data_dir": "d",
        "val_fraction": "0.2",
        "seed": "-4",
        "widths": "8,16",
        "batch_size": "32",
        "lr": "0.05",
        "device": "cpu",
        "population_size": "4",
        "workers": "2",
        "launcher": "local",  # ray would refuse the SQLite storage and --devices
        "ray_address": "10.0.0.1:6379",
        "ray_gpus": "0.5",
        "ray_cpus": "2",
        "devices": "0,1",
        "heartbeat_interval": "9",
        "reconnect_timeout": "2.5",
    }
    switches = [name for name, o in OPTIONS.items() if o.kind == "switch"]
    assert sorted([*values, *switches]) == sorted(OPTIONS)  # every field is exercised
    argv = [a for name, v in values.items() for a in (cli.flags(name)[0], v)]
    config = config_from_args([*argv, "--compile", "--no-progress"])
    assert config.objectives == ("accuracy", "flops") and config.widths == (8, 16)
    assert config.devices == (0, 1) and config.timeout == 60.5 and config.seed == -4
    assert config.max_params == 100000 and config.val_fraction == 0.2
    assert config.reconnect_timeout == 2.5 and config.heartbeat_interval == 9
    assert config.compile is True and config.progress is False and config.artifacts == "pics"
    assert (config.ray_address, config.ray_gpus, config.ray_cpus) == ("10.0.0.1:6379", 0.5, 2.0)


def test_a_diverged_trial_is_one_line_without_optunas_traceback(tmp_path):
    args = ["--epochs", "1", "--val-fraction", "0.9", "--lr", "1e9", "--n-trials", "1"]
    done = run_cli(*TINY, *args, "--storage", "sqlite:///s.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # the study goes on
    # Optuna's "[I ...]" info lines (the study's creation) stay; its warnings about the trial
    # that nanonas failed itself, with their traceback, do not (progress.quiet_optuna_when).
    (line,) = [s for s in done.stderr.splitlines() if not s.startswith("[I ")]
    assert line.startswith("trial    0  FAIL") and "training loss became nan" in line, line


def test_a_corrupt_jpeg_in_an_imagefolder_is_one_line_exit_2_and_no_study(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "ds" / "train" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 90, 40, 200)).save(
                tmp_path / "ds" / "train" / c / f"{i}.jpg"
            )
    corrupt = tmp_path / "ds" / "train" / "dog" / "2.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    args = ["--dataset", "imagefolder", "--data-dir", "ds", "--storage", "sqlite:///s.db"]
    done = run_cli(*args, "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        "nanonas: error: imagefolder cannot decode ds/train/dog/2.jpg: 1 of 5 image files "
        "cannot be decoded (corrupt, truncated or not an image); fix or remove them"
    )
    assert not (tmp_path / "s.db").exists()
