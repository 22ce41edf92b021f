"""The command line of `python -m nanonas.study`, built from StudyConfig's declaration.

    python -m nanonas.study --sampler nsga2                  # CIFAR-10, sqlite:///nanonas.db
    python -m nanonas.study --config quick                   # synthetic data, under a minute
    python -m nanonas.study --objectives accuracy,params --n-trials 100
    python -m nanonas.study --sampler cmaes --max-params 300000   # never trains a bigger network
    optuna-dashboard sqlite:///nanonas.db --artifact-dir nanonas-artifacts   # watch it live

Every StudyConfig field is a flag (`n_trials` -> `--n-trials`; a switch such as `progress` gets
`--progress` and `--no-progress`), with the help and default its declaration gives. Flags
override a --config preset, which overrides the defaults. The same --storage and --study-name
resume a study and add --n-trials more trials (re-queued ones among them). Bad input is one line
and exit status 2, before anything is created; Ctrl-C or SIGTERM saves what finished, fails and
re-queues the running trial, and exits 130 or 143; a storage that stays unreachable for
--reconnect-timeout seconds is one line and exit status 75; a full disk under SQLite or a
journal file is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from nanonas import workers
from nanonas.errors import NanonasError, OneLineParser, StorageGone
from nanonas.study.config import (
    OPTIONS,
    StudyConfig,
    coerce,
    flag_type,
    shown_default,
)
from nanonas.study.presets import preset, presets
from nanonas.study.run import run
from nanonas.study.summary import next_steps, summary

__all__ = ["config_from_args", "flags", "main", "parser"]


_METAVARS = {
    "count": "N",
    "integer": "N",
    "seconds": "SECONDS",
    "text": "TEXT",
    "storage": "URL",
    "folder": "DIR",
    "choice": "NAME",
    "choices": "NAMES",
    "widths": "WIDTHS",
    "devices": "INDICES",
}


def flags(name: str) -> list[str]:
    """The command-line flags of StudyConfig field `name`."""
    flag = "--" + name.replace("_", "-")
    return [flag, f"--no-{flag[2:]}"] if OPTIONS[name].kind == "switch" else [flag]


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m nanonas.study",
        description="Run (or resume) a neural architecture search as an Optuna study.",
        argument_default=argparse.SUPPRESS,  # only what the user gave overrides the preset
        allow_abbrev=False,  # --epoch must not quietly mean --epochs
    )
    p.add_argument(
        "--config",
        metavar="PRESET",
        help=f"a built-in preset ({', '.join(presets())}) or a TOML file of these settings; "
        "flags override its values",
    )
    for name, option in OPTIONS.items():
        text = option.help
        if option.choices:
            text += f"; one of {', '.join(option.choices)}"
        text += f" (default {shown_default(name)})"
        if option.kind == "switch":
            # BooleanOptionalAction adds the --no- form itself.
            p.add_argument(flags(name)[0], action=argparse.BooleanOptionalAction, help=text)
        else:
            p.add_argument(
                *flags(name),
                type=flag_type(name),
                metavar=_METAVARS.get(option.kind, "X"),
                help=text.replace("%", "%%"),
            )
    return p


def config_from_args(argv: Sequence[str] | None = None) -> StudyConfig:
    """The StudyConfig that these command-line arguments describe (flags over --config)."""
    args: dict[str, Any] = vars(parser().parse_args(argv))
    source = args.pop("config", None)
    merged = preset(source) if source is not None else {}
    merged.update(coerce(args, "the flags"))
    return StudyConfig(**merged)


def main(argv: Sequence[str] | None = None) -> int:
    workers.stop_cleanly_on_signals()  # SIGTERM stops as cleanly as Ctrl-C
    try:
        config = config_from_args(argv)
        study = run(config)
    except StorageGone:
        return StorageGone.EXIT_CODE  # each worker that saw it said so in its own line
    except NanonasError as e:
        print(f"nanonas: error: {e}", file=sys.stderr)
        return getattr(e, "EXIT_CODE", 2)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        said = getattr(e, "said", "")
        print(
            f"nanonas: interrupted ({signal.Signals(signum).name}); "
            + (f"{said}; " if said else "")
            + "finished trials are saved, run the same command to resume",
            file=sys.stderr,
        )
        return 128 + signum
    print(summary(study))
    print(next_steps(study, config.storage, artifacts=config.artifacts))
    return 0
