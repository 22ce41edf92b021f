"""Training throughput: the seed's classic loop against nanonas's trainer, on the same images.

    python benchmarks/throughput.py --dataset imagefolder --data-dir /tmp/d/cifar10-jpeg  # CUDA
    python benchmarks/throughput.py --dataset imagefolder --data-dir /tmp/d/cifar10-jpeg \\
        --device cpu --subset 2000 --epochs 1                                          # 2 CPU cores

Trains one NanoNet (train_one.py's seed-style DEFAULT_ARCH at width 48, or --arch) for --epochs
epochs, each way in a fresh process so that peak memory is its own:

    seed       the classic loop: torchvision DataLoader over PIL images (RandomCrop with padding,
               RandomHorizontalFlip, ToTensor, Normalize) in worker processes, fp32 NCHW, batch
               128, SGD momentum 0.9 weight decay 1e-4 with cosine decay, `.item()` every step
    nanonas    nanonas.train.train with its defaults (device-resident uint8 data, augmentation on
               the device, bf16 autocast and channels_last where they are fast, fused SGD)
    plain      the same trainer in fp32 and NCHW: the ratio baseline for precision and layout
    compiled   the same trainer with compile=True (only with --compile; the first trial of a
               process pays the compilation, which this one-trial run counts)

Images/s counts training images x epochs over the whole run, validation after every epoch
included, as a study's trials do; seconds per epoch are listed one by one (the first holds the
warm-up). Peak memory: torch.cuda.max_memory_allocated on CUDA, the process's peak resident set
on the CPU (DataLoader workers not included). Then the data-pipeline check: one epoch of
training steps fed by DeviceLoader against the same steps over batches made beforehand (same
model, precision and layout), the best of --rounds alternating rounds, and the loader alone.
With --matrix W,W,...: training steps alone (random tensors, batch --batch-size) in fp32 and
bf16, NCHW and channels_last, at each width W, the measurement behind TrainConfig's "auto";
an entry `resnet20` times a CIFAR ResNet-20 the same way, the DESIGN's reference for the gain
a CPU can give.

Appends a dated Markdown section to benchmarks/results/throughput-<device>.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nanonas import data
from nanonas.model import NanoNet, count_params
from nanonas.space import Architecture
from nanonas.train import TrainConfig, resolve_device, train

sys.path.insert(0, str(Path(__file__).parent))
from train_one import DEFAULT_ARCH  # noqa: E402  (a sibling script, not a package)

_WAYS = ("seed", "nanonas", "plain", "compiled", "pipeline", "matrix")


def main() -> None:
    args = _parser().parse_args()
    if args.one:  # a child process: measure one way, print one JSON line
        print(json.dumps(_measure(args.one, args)), flush=True)
        return
    device = resolve_device(args.device)
    train_set, val_set = _data(args)
    ways = ["seed", "nanonas", "plain"] + (["compiled"] if args.compile else []) + ["pipeline"]
    ways += ["matrix"] if args.matrix else []
    load_start = os.getloadavg()
    results = {}
    for way in ways:
        print(f"--- {way}", flush=True)
        child = [sys.executable, __file__, *sys.argv[1:], "--one", way, "--device", str(device)]
        out = subprocess.run(child, check=True, capture_output=True, text=True)
        results[way] = json.loads(out.stdout.strip().splitlines()[-1])
        print(results[way], flush=True)
    load_end = os.getloadavg()
    lines = _report(args, device, train_set, val_set, results, load_start, load_end)
    print("\n".join(lines))
    path = Path(args.out or Path(__file__).parent / "results" / f"throughput-{device.type}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n\n")
    print(f"appended to {path}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--subset", type=int, help="use N random training images (before the split)")
    p.add_argument("--arch", default=DEFAULT_ARCH)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="nanonas's")
    p.add_argument("--seed-batch-size", type=int, default=128)
    p.add_argument("--seed-lr", type=float, default=0.05, help="0.1 x 128/256, linear scaling")
    p.add_argument("--workers", type=int, help="DataLoader workers; default min(4, CPU cores)")
    p.add_argument("--compile", action="store_true", help="also measure compile=True")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, the best kept")
    p.add_argument(
        "--matrix",
        type=_matrix_entries,
        help="NanoNet widths and/or resnet20, e.g. 16,48,resnet20: time precision x layout at each",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="Markdown file to append to")
    p.add_argument("--one", choices=_WAYS, help=argparse.SUPPRESS)
    return p


def _matrix_entries(text: str) -> list[str]:
    entries = [e.strip() for e in text.split(",")]
    for e in entries:
        if e != "resnet20" and not (e.isdigit() and int(e) > 0):
            raise argparse.ArgumentTypeError(f"{e!r} is neither a positive width nor resnet20")
    return entries


def _data(args: argparse.Namespace) -> tuple[data.ImageData, data.ImageData]:
    full = data.load(args.dataset, data_dir=args.data_dir)
    if args.subset and args.subset < len(full):
        g = torch.Generator().manual_seed(args.seed)
        full = full.subset(torch.randperm(len(full), generator=g)[: args.subset])
    return data.split(full, seed=args.seed)


def _measure(way: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    train_set, val_set = _data(args)
    if way == "pipeline":
        return _pipeline(args, device, train_set.to(device))
    if way == "matrix":
        return _matrix(args, device, train_set)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    arch = Architecture.parse(args.arch)
    if way != "seed":  # as a study does, once per process: not part of a trial's time
        train_set, val_set = train_set.to(device), val_set.to(device)
    start = time.perf_counter()
    stamps: list[float] = []
    if way == "seed":
        val_acc = _seed_loop(args, device, arch, train_set, val_set, stamps)
    else:
        extra = {"plain": dict(precision="fp32", layout="nchw"), "compiled": dict(compile=True)}
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            device=str(device),
            seed=args.seed,
            **extra.get(way, {}),
        )
        history = train(
            arch,
            config,
            train_set=train_set,
            val_set=val_set,
            on_epoch=lambda epoch, acc: stamps.append(time.perf_counter()),
        )
        val_acc = history.val_acc
    seconds = time.perf_counter() - start
    epochs = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "images_per_s": len(train_set) * args.epochs / seconds,
        "epoch_seconds": epochs,
        "peak_mib": peak / 2**20,
        "val_acc": val_acc,
    }


class _PILImages(torch.utils.data.Dataset):
    """The uint8 images as PIL images through torchvision transforms, as the seed loads CIFAR."""

    def __init__(self, d: data.ImageData, transform: object) -> None:
        self.images = d.images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, what PIL takes
        self.labels = d.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = self.images[i]
        img = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        return self.transform(img), self.labels[i]


def _seed_loop(
    args: argparse.Namespace,
    device: torch.device,
    arch: Architecture,
    train_set: data.ImageData,
    val_set: data.ImageData,
    stamps: list[float],
) -> list[float]:
    from torchvision import transforms as T

    size = train_set.image_size
    normalize = [T.ToTensor(), T.Normalize(train_set.mean, train_set.std)]
    augment = T.Compose([T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip()])
    workers = _workers(args)
    common = dict(num_workers=workers, pin_memory=device.type == "cuda")
    common |= dict(persistent_workers=workers > 0)
    train_loader = torch.utils.data.DataLoader(
        _PILImages(train_set, T.Compose([augment, *normalize])),
        batch_size=args.seed_batch_size,
        shuffle=True,
        **common,
    )
    val_loader = torch.utils.data.DataLoader(
        _PILImages(val_set, T.Compose(normalize)), batch_size=args.seed_batch_size, **common
    )
    torch.manual_seed(args.seed)
    model = NanoNet(arch, num_classes=train_set.num_classes, in_channels=train_set.images.shape[1])
    model = model.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.seed_lr, momentum=0.9, weight_decay=1e-4
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=args.epochs * len(train_loader)
    )
    val_acc = []
    for _ in range(args.epochs):
        model.train()
        running = 0.0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()  # the classic loop's per-step sync, kept on purpose
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(1) == y).sum().item()
        val_acc.append(correct / len(val_set))
        stamps.append(time.perf_counter())
    return val_acc


def _workers(args: argparse.Namespace) -> int:
    return args.workers if args.workers is not None else min(4, os.cpu_count() or 1)


def _pipeline(args: argparse.Namespace, device: torch.device, train_set: data.ImageData) -> dict:
    """Seconds for one epoch of training steps fed by DeviceLoader, and for the same number of
    steps over batches made beforehand; the same model, precision, layout and optimizer as
    train() picks (its private helpers, so that this measures exactly its step)."""
    from nanonas.train import _autocast, _channels_last, _optimizer

    config = TrainConfig(batch_size=args.batch_size, device=str(device), seed=args.seed)
    channels_last = _channels_last(device, config.layout)
    loader = data.DeviceLoader(
        train_set,
        batch_size=config.batch_size,
        augment=True,
        shuffle=True,
        device=device,
        channels_last=channels_last,
    )
    torch.manual_seed(args.seed)
    arch = Architecture.parse(args.arch)
    model = NanoNet(arch, num_classes=train_set.num_classes, in_channels=train_set.images.shape[1])
    model = model.to(device, memory_format=torch.channels_last if channels_last else None)
    optimizer = _optimizer(model, config, device)
    ready = list(loader)  # one epoch of batches, made once

    def epoch(batches) -> float:
        loss_sum = torch.zeros((), device=device)
        start = time.perf_counter()
        for x, y in batches:
            with _autocast(device, config.precision):
                loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().float()
        loss_sum.item()  # waits for the device
        return time.perf_counter() - start

    epoch(ready[:2])  # warm-up: kernels chosen, memory allocated
    bare, fed, loader_only = [], [], []
    for i in range(args.rounds):  # alternating, each first every other round
        for way in ("bare", "fed") if i % 2 == 0 else ("fed", "bare"):
            (bare if way == "bare" else fed).append(epoch(ready if way == "bare" else loader))
        start = time.perf_counter()
        for _batch in loader:
            pass
        _sync(device)
        loader_only.append(time.perf_counter() - start)
    # the least disturbed round: on a shared machine the spread is other processes' work
    return {
        "steps": len(ready),
        "bare_s": min(bare),
        "fed_s": min(fed),
        "loader_s": min(loader_only),
    }


def _matrix(args: argparse.Namespace, device: torch.device, train_set: data.ImageData) -> dict:
    """Images/s of training steps alone, per width, for fp32/bf16 x NCHW/channels_last; the
    four run in turn, --rounds times, and each keeps its best round."""
    from nanonas.train import _optimizer

    base = Architecture.parse(args.arch)
    size, channels = train_set.image_size, train_set.images.shape[1]
    steps = max(2, 512 // args.batch_size)
    rates = {}
    for entry in args.matrix:
        runs = {}
        for precision in ("fp32", "bf16"):
            for layout in ("nchw", "channels_last"):
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                torch.manual_seed(args.seed)
                if entry == "resnet20":
                    model = _resnet20(channels, train_set.num_classes)
                else:
                    arch = Architecture(base.stage1, base.stage2, int(entry))
                    model = NanoNet(arch, num_classes=train_set.num_classes, in_channels=channels)
                model = model.to(device, memory_format=fmt)
                optimizer = _optimizer(model, TrainConfig(), device)
                x = torch.randn(args.batch_size, channels, size, size, device=device)
                x = x.contiguous(memory_format=fmt)
                y = torch.randint(0, train_set.num_classes, (args.batch_size,), device=device)
                bf16 = precision == "bf16"

                def step(model=model, optimizer=optimizer, x=x, y=y, bf16=bf16) -> None:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss = F.cross_entropy(model(x), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()

                step()  # warm-up
                runs[f"{precision} {layout}"] = step
        best = dict.fromkeys(runs, 0.0)
        for _ in range(args.rounds):
            for name, step in runs.items():
                _sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                _sync(device)
                rate = steps * args.batch_size / (time.perf_counter() - start)
                best[name] = max(best[name], rate)
        rates[entry] = best
    return rates


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def _resnet20(in_channels: int, num_classes: int) -> nn.Module:
    """He et al.'s CIFAR ResNet-20 (3 stages of 3 basic blocks at 16/32/64 channels, 1x1
    projection shortcuts): the DESIGN's reference for what bf16 + channels_last gain on a CPU,
    measured beside NanoNet so that a target ratio can be judged on the machine at hand."""
    layers = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(_BasicBlock(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPU cores"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def _report(
    args: argparse.Namespace,
    device: torch.device,
    train_set: data.ImageData,
    val_set: data.ImageData,
    results: dict[str, dict],
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
) -> list[str]:
    arch = Architecture.parse(args.arch)
    params = count_params(NanoNet(arch, num_classes=train_set.num_classes))
    workers = _workers(args)
    lines = [
        f"## {datetime.datetime.now():%Y-%m-%d %H:%M} — {device} ({_machine(device)})",
        "",
        f"`python benchmarks/throughput.py {' '.join(sys.argv[1:])}`",
        "",
        f"torch {torch.__version__}; {args.dataset}, {len(train_set)} training and "
        f"{len(val_set)} validation images of {train_set.image_size}x{train_set.image_size}; "
        f"`{arch}` ({params:,} parameters); {args.epochs} epochs; seed loop batch "
        f"{args.seed_batch_size} with {workers} DataLoader workers"
        + (" (fewer than 4: the machine has fewer cores)" if workers < 4 else "")
        + f", nanonas batch {args.batch_size}; one run each, no spread measured.",
    ]
    if device.type == "cpu":
        lines[-1] += (
            f" Load average (1, 5, 15 min) {_load(load_start)} at the start, "
            f"{_load(load_end)} at the end."
        )
    lines += [
        "",
        "| loop | images/s | seconds per epoch | peak memory MiB | val acc per epoch |",
        "|---|---|---|---|---|",
    ]
    names = {
        "seed": "seed-style (DataLoader + PIL, fp32)",
        "nanonas": "nanonas (defaults)",
        "plain": "nanonas, fp32 NCHW",
        "compiled": "nanonas, compile=True",
    }
    for way, name in names.items():
        if way in results:
            r = results[way]
            lines.append(
                f"| {name} | {r['images_per_s']:,.0f} | "
                f"{' '.join(f'{s:.1f}' for s in r['epoch_seconds'])} | {r['peak_mib']:,.0f} | "
                f"{' '.join(f'{a:.3f}' for a in r['val_acc'])} |"
            )
    rate = {way: r["images_per_s"] for way, r in results.items() if way in names}
    p = results["pipeline"]
    overhead = p["fed_s"] / p["bare_s"] - 1
    lines += [
        "",
        f"- nanonas / seed-style: **{rate['nanonas'] / rate['seed']:.2f}x**; "
        f"nanonas / fp32 NCHW (same trainer): **{rate['nanonas'] / rate['plain']:.2f}x**"
        + (
            f"; compiled / nanonas: {rate['compiled'] / rate['nanonas']:.2f}x"
            if "compiled" in rate
            else ""
        ),
        f"- data pipeline: one epoch ({p['steps']} steps, nanonas's precision and layout) fed by "
        f"DeviceLoader took {p['fed_s']:.2f} s, over batches made beforehand {p['bare_s']:.2f} s "
        f"(best of {args.rounds}): **{overhead:+.1%}** (target within 15%); the loader alone "
        f"makes that epoch's batches in {p['loader_s']:.3f} s "
        f"({p['loader_s'] / p['bare_s']:.1%} of the bare epoch).",
    ]
    if "matrix" in results:
        lines += _matrix_table(args, results["matrix"])
    return lines


def _matrix_table(args: argparse.Namespace, rates: dict[str, dict[str, float]]) -> list[str]:
    combos = list(next(iter(rates.values())))
    lines = [
        "",
        f"Training steps alone (random tensors, batch {args.batch_size}, best of "
        f"{args.rounds}), images/s and x fp32 NCHW:",
        "",
        "| network | " + " | ".join(combos) + " |",
        "|---" * (len(combos) + 1) + "|",
    ]
    for entry, best in rates.items():
        base = best["fp32 nchw"]
        cells = [f"{r:,.0f} ({r / base:.2f}x)" for r in best.values()]
        name = "ResNet-20" if entry == "resnet20" else f"NanoNet, width {entry}"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
