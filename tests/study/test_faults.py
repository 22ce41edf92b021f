"""Storage faults, end to end: the real CLI on the real servers, faults made by nanonas's TCP
proxy. Each case is a row of benchmarks/faults.py (which says what each does) and must meet the
targets there: every asked trial finished, none extra, none left RUNNING, at most one line per
fault plus one; or, when the storage is gone for good, one line and exit 75 within the bound."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import server

_PATH = Path(__file__).parents[2] / "benchmarks" / "faults.py"
_spec = importlib.util.spec_from_file_location("faults", _PATH)
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)

# Every case on PostgreSQL; on MySQL and Redis the ones whose handling differs by driver.
ROWS = [(case, "postgresql") for case in faults.CASES] + [
    (case, kind) for kind in ("mysql", "redis") for case in ("create", "drops", "frozen")
]


@pytest.mark.parametrize(("case", "kind"), ROWS, ids=[f"{c}-{k}" for c, k in ROWS])
def test_fault(case, kind):
    server(kind)  # skip without the server (fail in CI)
    row = faults.run_case(case, kind, n_trials=6)
    assert row["faults"] >= 1, "the fault was never made"
    shown = {k: v for k, v in row.items() if k != "stderr"}
    assert faults.verdict(row) == "ok", f"{shown}\n" + "\n".join(row["stderr"])
    if case in faults.GONE:
        left = set()
        for line in row["stderr"]:
            assert line.startswith("nanonas: error: ") and "is left RUNNING" in line
            assert "rerun the same command" in line and "Traceback" not in line
            left.add(line.split(" is left RUNNING")[0].rsplit("trial ", 1)[1])
        # Each names its own trial; one may have finished after all, if its result was on its
        # way as the storage went silent (the line says so then).
        assert row["left"] <= len(left) == row["workers"]
    if case == "gone":  # the rerun the line promises: the trial left RUNNING is retried
        url = server(kind)
        rerun = faults.start(url, row["study"], 1)
        assert rerun.wait(timeout=120) == 0, rerun.stderr.read()
        finished, retries, _, left = faults.count(url, row["study"])
        assert left == 0 and retries == 1 and finished == row["finished"] + 1
    if case == "lost":
        (line,) = row["stderr"]
        assert "was failed by another worker while this one was cut off" in line
        assert "retried as trial" in line and "its result is dropped" in line
