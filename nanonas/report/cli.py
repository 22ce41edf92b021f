"""The command line of `python -m nanonas.report`.

    python -m nanonas.report            # the storage's only study, into report-<study>/
    python -m nanonas.report --storage sqlite:///nanonas.db --study-name s1 --out reports/s1

It writes <out>/report.html and only reads the storage, so it works on a running study too. Bad
input (a bad flag, an unknown study, an unwritable output folder) is one line and exit status
2, with nothing written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nanonas.errors import NanonasError, OneLineParser

__all__ = ["FLAGS", "main", "parser"]

# flag -> (default as shown, help)
FLAGS: dict[str, tuple[str, str]] = {
    "--storage": ("sqlite:///nanonas.db", "where the study lives, as for nanonas.study"),
    "--study-name": ("the storage's only study", "the study to report on"),
    "--out": ("report-<study>", "the folder to write report.html into (made if missing)"),
}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m nanonas.report",
        description="Write one study's results as a self-contained HTML page.",
        allow_abbrev=False,
    )

    def add(flag: str, **kwargs) -> None:
        default, text = FLAGS[flag]
        p.add_argument(flag, help=f"{text} (default {default})".replace("%", "%%"), **kwargs)

    add("--storage", metavar="URL", default="sqlite:///nanonas.db")
    add("--study-name", metavar="TEXT", default=None)
    add("--out", metavar="FOLDER", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from nanonas.report.page import write_report

    try:
        args = parser().parse_args(argv)
        path = write_report(storage=args.storage, study_name=args.study_name, out=args.out)
    except NanonasError as e:
        print(f"nanonas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nanonas: interrupted", file=sys.stderr)
        return 130
    print(f"report written to {path}")
    return 0
