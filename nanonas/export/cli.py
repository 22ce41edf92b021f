"""The command line of `python -m nanonas.export`.

    python -m nanonas.export                                   # the only study's best trial
    python -m nanonas.export --study-name s1 --trial 12 --epochs 30 --out model12
    python -m nanonas.export --max-params 300000               # a Pareto study: best within it

Bad input (an unknown study or trial, a pruned, failed or over-budget trial, a budget no trial
meets, a dataset without a test split, an existing or unwritable output folder) is one line and
exit status 2, with nothing written and the study unchanged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nanonas.errors import NanonasError, OneLineParser
from nanonas.export.run import DEFAULT_EPOCHS, export

__all__ = ["FLAGS", "main", "parser"]

# flag -> (default as shown, help); the README's table is held to this by a test.
FLAGS: dict[str, tuple[str, str]] = {
    "--storage": ("sqlite:///nanonas.db", "where the study lives, as for nanonas.study"),
    "--study-name": ("the storage's only study", "the study to export from"),
    "--trial": ("the best", "the trial number to export"),
    "--max-params": (
        "none",
        "a Pareto study: the most accurate member with at most this many parameters",
    ),
    "--max-flops": (
        "none",
        "a Pareto study: the most accurate member with at most these FLOPs per image",
    ),
    "--epochs": (str(DEFAULT_EPOCHS), "epochs of the retraining on train + validation"),
    "--out": ("export-<study>-trial-<N>", "the folder to create"),
    "--force": ("off", "replace an existing output folder"),
    "--device": ("auto", "CUDA, then MPS, then CPU; or cpu, cuda, cuda:N, mps"),
    "--data-dir": ("the study's", "where the dataset is"),
    "--seed": ("the trial's", "seeds the retraining"),
    "--progress": ("on", "a progress bar per epoch (--no-progress: none)"),
}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m nanonas.export",
        description="Retrain a study's trial on train + validation, test it once, export it.",
        allow_abbrev=False,
    )

    def add(flag: str, **kwargs) -> None:
        default, text = FLAGS[flag]
        p.add_argument(flag, help=f"{text} (default {default})".replace("%", "%%"), **kwargs)

    add("--storage", metavar="URL", default="sqlite:///nanonas.db")
    add("--study-name", metavar="TEXT", default=None)
    add("--trial", metavar="N", type=int, default=None)
    add("--max-params", metavar="N", type=int, default=None)
    add("--max-flops", metavar="N", type=int, default=None)
    add("--epochs", metavar="N", type=int, default=DEFAULT_EPOCHS)
    add("--out", metavar="FOLDER", default=None)
    add("--force", action="store_true")
    add("--device", metavar="TEXT", default="auto")
    add("--data-dir", metavar="FOLDER", default=None)
    add("--seed", metavar="N", type=int, default=None)
    add("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        folder = export(
            storage=args.storage,
            study_name=args.study_name,
            trial=args.trial,
            max_params=args.max_params,
            max_flops=args.max_flops,
            out=args.out,
            epochs=args.epochs,
            force=args.force,
            device=args.device,
            data_dir=args.data_dir,
            seed=args.seed,
            progress=args.progress,
        )
    except NanonasError as e:
        print(f"nanonas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nanonas: interrupted; nothing was written", file=sys.stderr)
        return 130
    from nanonas.export.load import load_model

    card = load_model(folder).card
    print(
        f"trial {card['trial']}: test accuracy {card['test_acc']:.4f} "
        f"({card['test_acc_flip']:.4f} with flips) after {card['epochs']} epochs; "
        f"exported to {folder}/ ({', '.join(card['files'])})"
    )
    return 0
