"""nanonas.export.cli: the README's table of export flags is the parser's."""

from __future__ import annotations

import re
from pathlib import Path

from nanonas.export import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_lists_exactly_the_export_flags_and_defaults():
    text = README.read_text()
    table = text.split("Every flag (`python -m nanonas.export --help`", 1)[1].split("\n\n")[1]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `--"):
            flag_cell, default, what = (c.strip() for c in line.strip("|").split("|"))
            rows[re.findall(r"`(--[a-z-]+)`", flag_cell)[0]] = (default, what)
    assert list(rows) == list(cli.FLAGS)
    for flag, (default, what) in cli.FLAGS.items():
        assert rows[flag] == (default, what)
    help_text = cli.parser().format_help()
    parser_flags = {o for a in cli.parser()._actions for o in a.option_strings} - {"-h", "--help"}
    assert parser_flags == set(cli.FLAGS) | {"--no-progress"}
    for flag, (default, _) in cli.FLAGS.items():
        assert flag in help_text
        assert f"(default {default})" in " ".join(help_text.split())
