"""The code's layout: one concern per file, each under 400 lines with a docstring, and one
module (nanonas.records) that reads and writes the attributes nanonas keeps on trials and
studies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nanonas"
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_where_we_look():
    assert (PACKAGE / "records.py") in MODULES and len(MODULES) > 20


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_is_over_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.relative_to(PACKAGE)} has {lines} lines; split it by concern"


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_every_module_says_what_it_is(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring) > 40, f"{path.relative_to(PACKAGE)} has no docstring"


def _attribute_access(path: Path) -> list[str]:
    """Where the module reads or writes a trial's or a study's attributes by name: a
    set_user_attr call, or a subscript, .get() or `in` on `.user_attrs` (passing the whole
    mapping on to nanonas.records is fine; Optuna's own system_attrs are not nanonas's)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr == "set_user_attr":
            found.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.Subscript) and _is_attrs(node.value):
            found.append(f"{where}: user_attrs[...]")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _is_attrs(node.func.value)
        ):
            found.append(f"{where}: user_attrs.get(...)")
        elif isinstance(node, ast.Compare) and any(_is_attrs(c) for c in node.comparators):
            found.append(f"{where}: ... in user_attrs")
    return found


def _is_attrs(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "user_attrs"


def test_only_records_reads_or_writes_attributes_by_name():
    found = [f for path in MODULES if path.name != "records.py" for f in _attribute_access(path)]
    assert not found, "use nanonas.records instead:\n" + "\n".join(found)


def test_the_check_above_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(trial, study):\n"
        "    trial.set_user_attr('val_acc', [])\n"
        "    x = trial.user_attrs['arch']\n"
        "    y = trial.user_attrs.get('params')\n"
        "    return 'reused_from' in study.user_attrs\n"
    )
    global PACKAGE
    kept, PACKAGE = PACKAGE, tmp_path
    try:
        assert len(_attribute_access(bad)) == 4
    finally:
        PACKAGE = kept
