"""Host memory of a study: the peak resident set of `python -m nanonas.study` with the given flags.

    python benchmarks/host_memory.py --repeat 2 -- --dataset imagefolder \\
        --data-dir /tmp/d/cifar10-jpeg --epochs 1 --n-trials 2 --widths 8 --sampler random

Everything after `--` goes to nanonas.study unchanged, except that each run gets a fresh SQLite
study in a temporary folder (and --no-progress). Each run is a child process; its peak resident
set comes from the kernel (getrusage of the waited-for child), so nothing in nanonas is
instrumented. As a baseline the script also measures a process that only imports nanonas.study
(torch, optuna and the rest), the part of the peak no study can avoid.

The issue's target is a peak of at most 2 GB for a CIFAR-10 study. On a GPU the images and
activations live in device memory, so host memory is the libraries plus the data held once; on
the CPU the activations of training are host memory too and grow with --widths and
--batch-size. Appends a dated Markdown section to benchmarks/results/host_memory-<device>.md
(or --out); --device (auto: cuda when there is one) only names the file and is passed on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from throughput import _machine  # noqa: E402  (a sibling script, not a package)


def main() -> None:
    args, study_args = _parse()
    if "--storage" in study_args or "--workers" in study_args:
        sys.exit("host_memory.py: error: --storage and --workers are set by this script")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    baseline = _peak_mib([sys.executable, "-c", "import nanonas.study"])
    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            command = [
                *(sys.executable, "-m", "nanonas.study", *study_args, "--device", device),
                *("--storage", f"sqlite:///{tmp}/memory.db", "--no-progress"),
            ]
            start = time.perf_counter()
            peak = _peak_mib(command)
            runs.append((peak, time.perf_counter() - start))
            print(f"run {i + 1}: peak {peak:,.0f} MiB in {runs[-1][1]:.0f} s", flush=True)
    lines = _report(args, device, study_args, baseline, runs)
    print("\n".join(lines))
    kind = torch.device(device).type
    path = Path(args.out or Path(__file__).parent / "results" / f"host_memory-{kind}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")


def _parse() -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="runs of the study command")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (passed to the study)")
    p.add_argument("--out", help="Markdown file to append to")
    args = p.parse_args(argv[:split])
    if args.repeat < 1:
        p.error(f"--repeat must be at least 1, got {args.repeat}")
    return args, argv[split + 1 :]


def _peak_mib(command: list[str]) -> float:
    """Runs `command` to its end and returns its peak resident set in MiB; a failed command
    ends this script with the command's last line of stderr (its one-line error)."""
    # RUSAGE_CHILDREN's maxrss is the largest of the waited-for children so far: a fresh
    # grandchild process per measurement keeps earlier runs out of this one.
    probe = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True
    )
    rc, kib = (int(v) for v in out.stdout.split())
    if rc != 0:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        sys.exit(f"host_memory.py: error: the study exited with {rc}: {last}")
    return kib / 1024  # KiB on Linux


def _report(
    args: argparse.Namespace,
    device: str,
    study_args: list[str],
    baseline: float,
    runs: list[tuple[float, float]],
) -> list[str]:
    peaks = [p for p, _ in runs]
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        "",
        f"## {when} — {device} ({_machine(torch.device(device))})",
        "",
        f"`python benchmarks/host_memory.py --repeat {args.repeat} --device {args.device} -- "
        f"{' '.join(study_args)}`",
        "",
        f"torch {torch.__version__}; load average {load} at the end.",
        "",
        f"- importing nanonas.study alone: **{baseline:,.0f} MiB**",
        "- the study, peak resident set per run: "
        + ", ".join(f"**{p:,.0f} MiB** ({s:.0f} s)" for p, s in runs)
        + (f"; spread {max(peaks) - min(peaks):,.0f} MiB" if len(runs) > 1 else ""),
        f"- target at most 2 GB (2,048 MiB): {'met' if max(peaks) <= 2048 else 'NOT met'}",
    ]


if __name__ == "__main__":
    main()
