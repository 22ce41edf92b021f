"""Train architectures the way a trial does and report accuracy per epoch and throughput.

    python benchmarks/train_one.py --dataset imagefolder --data-dir /tmp/cifar10-jpeg \
        --epochs 30 --arch "w48:conv3x3,sep_conv3x3,conv3x3,skip/conv3x3,sep_conv3x3,conv3x3,skip"

For each --arch (repeatable): parameters, FLOPs, validation accuracy after every epoch, seconds
and images/s (training images x epochs / wall time, evaluation included), on the device that a
study would use. Appends a Markdown section to --out (default
benchmarks/results/train_one-<device>.md) so that runs on different machines sit side by side.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import torch

from nanonas import data
from nanonas.model import NanoNet, count_flops, count_params
from nanonas.space import Architecture
from nanonas.train import TrainConfig, resolve_device, train

# A seed-style network: 3x3 convolutions with a few cheap blocks, in the seed's size range.
DEFAULT_ARCH = "w48:conv3x3,sep_conv3x3,conv3x3,skip/conv3x3,sep_conv3x3,dil_conv3x3,skip"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--arch", action="append", help=f"repeatable; default {DEFAULT_ARCH}")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="Markdown file to append to")
    args = p.parse_args()

    device = resolve_device(args.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.machine()}, {torch.get_num_threads()} threads"
    full = data.load(args.dataset, data_dir=args.data_dir)
    train_set, val_set = data.split(full, seed=args.seed)
    train_set, val_set = train_set.to(device), val_set.to(device)
    lines = [
        f"## {datetime.date.today()} — {args.dataset}, {args.epochs} epochs, {device} ({name})",
        "",
        f"`{' '.join(sys.argv)}`; torch {torch.__version__}; {len(train_set)} training and "
        f"{len(val_set)} validation images; batch {args.batch_size}, lr {args.lr}, "
        f"weight decay {args.weight_decay}, seed {args.seed}.",
        "",
        "| architecture | params | MFLOPs | val acc per epoch | best | seconds | images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for text in args.arch or [DEFAULT_ARCH]:
        arch = Architecture.parse(text)
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            device=str(device),
            seed=args.seed,
        )
        history = train(
            arch,
            config,
            train_set=train_set,
            val_set=val_set,
            on_epoch=lambda e, acc, a=arch: print(
                f"{a}  epoch {e:>3}  val_acc {acc:.4f}", flush=True
            ),
        )
        params = count_params(NanoNet(arch, num_classes=full.num_classes))
        flops = count_flops(arch, image_size=full.image_size, num_classes=full.num_classes)
        rate = len(train_set) * args.epochs / history.seconds
        curve = " ".join(f"{a:.3f}" for a in history.val_acc)
        lines.append(
            f"| `{arch}` | {params:,} | {flops / 1e6:.1f} | {curve} | "
            f"{max(history.val_acc):.4f} | {history.seconds:.1f} | {rate:,.0f} |"
        )
        print(lines[-1], flush=True)
    out = Path(args.out or f"benchmarks/results/train_one-{device.type}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n\n")
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
