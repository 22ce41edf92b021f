"""Reproduce the original nanoNAS results table: a baseline CNN, a random NanoNet, and the network
`nano_nas("evolution", population_size=10, generations=5)` finds, each scored on a test split.

    python benchmarks/seed_table.py                              # CIFAR-10, full scale (a GPU)
    python benchmarks/seed_table.py --jpeg-dir /tmp/cifar10-jpeg --subset 4000 --test-size 2000 \
        --epochs 3 --search-epochs 1 --widths 8 --baseline-params 12000 --random-params 12000

Rows, each trained from scratch on the whole training set with nanonas's recipe (SGD, Nesterov
momentum 0.9, weight decay 5e-4, warm-up then cosine, label smoothing 0.1, crop + flip) for
--epochs, then scored once on the test split without and with flip test-time augmentation:
- baseline: a plain CNN (3x3 conv + BN + ReLU, two max-pools, global average pool, linear) whose
  width is picked to come closest to --baseline-params (180K, as the original describes);
- random: a uniformly random NanoNet over --widths with about --random-params (200K) parameters
  (the first sample within 10%, else the closest of 2,000);
- evolution: `nano_nas("evolution", population_size, generations)`: the search scores
  candidates on a validation split of the training set, then its best is exported as
  `python -m nanonas.export` does (retrained on train + validation for --epochs, tested once).

Test split: CIFAR-10's official one where it downloads. With --jpeg-dir (the shared JPEG copy of
the CIFAR-10 training images, which has no test images on purpose) a seeded random --test-size
of those images is held out as the test split, and the output says so: the numbers are then
comparable with each other, not with the original's, which used the official test set.

Prints a Markdown table beside the original's claimed numbers and appends it to --out (default
benchmarks/results/seed_table-<device>.md), with the command, machine, load and every reduction.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from nanonas import data, space
from nanonas.data import DeviceLoader
from nanonas.model import NanoNet, count_params
from nanonas.space import Architecture
from nanonas.study import nano_nas
from nanonas.train import TrainConfig, evaluate, resolve_device, train

# The original nanoNAS README's table (CIFAR-10 test accuracy, 30 epochs).
CLAIMED = {
    "baseline": ("65.4%", "~180K"),
    "random": ("68.1%", "~200K"),
    "evolution": ("75.2%", "247K"),
}


class Baseline(nn.Sequential):
    """A plain CNN: widths w, w, 2w, 2w, 4w with max-pools after the 2nd and 4th conv."""

    def __init__(self, width: int, *, num_classes: int = 10, in_channels: int = 3) -> None:
        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        w = width
        super().__init__(
            *conv(in_channels, w),
            *conv(w, w),
            nn.MaxPool2d(2),
            *conv(w, 2 * w),
            *conv(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *conv(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, num_classes),
        )


def baseline_width(target: int, num_classes: int) -> int:
    return min(
        range(2, 129),
        key=lambda w: abs(count_params(Baseline(w, num_classes=num_classes)) - target),
    )


def random_arch(target: int, widths: tuple[int, ...], seed: int) -> Architecture:
    g = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(2000):
        width = widths[int(torch.randint(len(widths), (1,), generator=g))]
        ops = [
            space.OP_NAMES[int(i)] for i in torch.randint(len(space.OP_NAMES), (8,), generator=g)
        ]
        arch = Architecture.from_ops(tuple(ops), width)
        params = count_params(NanoNet(arch))
        if abs(params - target) <= 0.1 * target:
            return arch
        if best is None or abs(params - target) < abs(best[0] - target):
            best = (params, arch)
    return best[1]


def jpeg_folder(
    jpeg_dir: Path, work: Path, *, subset: int | None, test_size: int, seed: int
) -> Path:
    """An imagefolder tree of symbolic links: a held-out test/ and the training train/."""
    files = sorted((jpeg_dir / "train").glob("*/*.jpg"))
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    test = [files[i] for i in order[:test_size]]
    rest = [files[i] for i in order[test_size:]]
    train = rest[:subset] if subset else rest
    root = work / f"seed_table-{len(train)}-{test_size}-{seed}"
    for split_name, chosen in (("test", test), ("train", train)):
        for f in chosen:
            link = root / split_name / f.parent.name / f.name
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f.resolve())
    return root


def score(
    model: nn.Module,
    full: data.ImageData,
    test: data.ImageData,
    config: TrainConfig,
    arch: Architecture | None,
) -> dict:
    history = train(arch, config, train_set=full, val_set=None, model=model)
    loader = DeviceLoader(test.normalized_as(full), batch_size=1024, device=history.device)
    net = history.model
    return {
        "test_acc": evaluate(net, loader, precision="fp32"),
        "test_acc_flip": evaluate(net, loader, precision="fp32", flip=True),
        "params": count_params(net),
        "seconds": history.seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jpeg-dir", help="the unpacked JPEG copy (holds train/); else CIFAR-10")
    p.add_argument("--data-dir", default="data", help="where CIFAR-10 is or is downloaded to")
    p.add_argument("--subset", type=int, help="training images used (default all)")
    p.add_argument("--test-size", type=int, default=10000, help="--jpeg-dir: images held out")
    p.add_argument("--epochs", type=int, default=30, help="final training of every row")
    p.add_argument("--search-epochs", type=int, default=10, help="per trial of the search")
    p.add_argument("--widths", default=",".join(map(str, space.WIDTHS)))
    p.add_argument("--population-size", type=int, default=10)
    p.add_argument("--generations", type=int, default=5)
    p.add_argument("--baseline-params", type=int, default=180_000)
    p.add_argument("--random-params", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/nanonas-seed-table", help="study and links go here")
    p.add_argument("--out", help="Markdown file to append to")
    args = p.parse_args()
    started = time.perf_counter()
    widths = tuple(int(w) for w in args.widths.split(","))
    device = resolve_device(args.device)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    if args.jpeg_dir:
        root = jpeg_folder(
            Path(args.jpeg_dir), work, subset=args.subset, test_size=args.test_size, seed=args.seed
        )
        dataset, data_dir = "imagefolder", str(root)
        test_note = (
            f"{args.test_size:,} images held out of the JPEG copy of the CIFAR-10 "
            "training set (seeded; no official test images here), not the official "
            "test set: compare the rows with each other, not with the claimed numbers"
        )
    else:
        if args.subset:
            sys.exit("--subset needs --jpeg-dir (CIFAR-10's own loader takes the whole set)")
        dataset, data_dir = "cifar10", args.data_dir
        test_note = "the official CIFAR-10 test set (10,000 images)"
    full = data.load(dataset, data_dir=data_dir)
    test = data.load(dataset, data_dir=data_dir, train=False)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, device=args.device, seed=args.seed
    )
    rows = {}

    width = baseline_width(args.baseline_params, full.num_classes)
    rows["baseline"] = score(
        Baseline(width, num_classes=full.num_classes), full, test, config, None
    ) | {"what": f"plain CNN, width {width}"}
    print("baseline", rows["baseline"], flush=True)

    arch = random_arch(args.random_params, widths, args.seed)
    rows["random"] = score(
        NanoNet(arch, num_classes=full.num_classes), full, test, config, arch
    ) | {"what": f"`{arch}`"}
    print("random", rows["random"], flush=True)

    search_started = time.perf_counter()
    model = nano_nas(
        "evolution",
        population_size=args.population_size,
        generations=args.generations,
        dataset=dataset,
        data_dir=data_dir,
        widths=widths,
        epochs=args.search_epochs,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        storage=f"sqlite:///{work / 'seed_table.db'}",
        study_name=f"seed-table-{datetime.datetime.now():%Y%m%d-%H%M%S}",
        out=work / f"export-{datetime.datetime.now():%Y%m%d-%H%M%S}",
        export_epochs=args.epochs,
        progress=False,
    )
    card = model.card
    rows["evolution"] = {
        "test_acc": card["test_acc"],
        "test_acc_flip": card["test_acc_flip"],
        "params": card["params"],
        "seconds": time.perf_counter() - search_started,
        "what": f"`{card['architecture']}` (trial {card['trial']}, search val acc "
        f"{card['search_val_acc']:.4f})",
    }
    print("evolution", rows["evolution"], flush=True)
    report(args, device, rows, full, test, test_note, time.perf_counter() - started)


def report(args, device, rows, full, test, test_note, seconds) -> None:
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = (
            f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    full_scale = (
        args.epochs == 30
        and args.search_epochs >= 10
        and not args.subset
        and args.population_size == 10
        and args.generations == 5
    )
    lines = [
        f"## {datetime.date.today()}: {device.type}, {'full scale' if full_scale else 'REDUCED'}",
        "",
        f"`python {' '.join(sys.argv)}`",
        "",
        f"- machine: {machine}; load average before the report {load} "
        f"(1, 5, 15 min); {seconds / 60:.1f} min in all; torch {torch.__version__}",
        f"- data: {len(full):,} training images ({full.image_size}x{full.image_size}); "
        f"test split: {test_note}",
        f"- every row: {args.epochs} epochs on the whole training set, SGD Nesterov momentum 0.9, "
        f"batch {args.batch_size}, lr {TrainConfig.lr}, weight decay {TrainConfig.weight_decay}",
        f"- evolution: nano_nas('evolution', population_size={args.population_size}, "
        f"generations={args.generations}), {args.search_epochs} epochs per trial, widths "
        f"{args.widths}; the seconds include the search",
        f"- targets: baseline {args.baseline_params:,} params, random NanoNet "
        f"{args.random_params:,} (the original: ~180K and ~200K)",
        "",
        "| row | test acc | with flips | params | seconds | network | original (claimed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        acc, size = CLAIMED[name]
        lines.append(
            f"| {name} | {r['test_acc']:.2%} | {r['test_acc_flip']:.2%} | {r['params']:,} | "
            f"{r['seconds']:.0f} | {r['what']} | {acc} at {size} params, 30 epochs |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out or Path(__file__).parent / "results" / f"seed_table-{device.type}.md")
    fresh = not out.exists()
    with out.open("a") as f:
        if fresh:
            f.write("# The original nanoNAS table, reproduced (`benchmarks/seed_table.py`)\n\n")
        f.write(text + "\n")


if __name__ == "__main__":
    main()
