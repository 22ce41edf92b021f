"""Train one NanoNet and measure it: the seed's SGD recipe, on whatever device is there.

    history = train(arch, TrainConfig(epochs=10), train_set=train, val_set=val,
                    on_epoch=lambda epoch, acc: print(epoch, acc))

SGD with Nesterov momentum 0.9 and weight decay (the seed nanoNAS's recipe), a short linear
warm-up then cosine decay to zero, label smoothing 0.1. The device is CUDA, then MPS, then the
CPU; on CUDA the forward runs under bf16 autocast in channels_last layout. Per step the loop
never waits for the device (no `.item()`): the loss is summed on the device and checked once per
epoch, when a NaN or infinite sum raises DivergedError.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nanonas.data import DeviceLoader, ImageData
from nanonas.errors import ConfigError, DivergedError
from nanonas.model import NanoNet
from nanonas.space import Architecture

__all__ = ["History", "TrainConfig", "evaluate", "resolve_device", "train"]

_PRECISIONS = ("auto", "bf16", "fp32")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256  # images per step
    lr: float = 0.1  # peak learning rate, reached after the warm-up
    warmup_epochs: float = 0.5  # linear warm-up from zero, then cosine decay to zero
    momentum: float = 0.9  # Nesterov
    weight_decay: float = 5e-4  # on every parameter
    label_smoothing: float = 0.1
    augment: bool = True  # random crop (padding 1/8 of the side) + horizontal flip
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere | bf16 | fp32
    seed: int = 0  # model initialisation, batch order and augmentation

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "warmup_epochs", "momentum", "weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.precision not in _PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; valid: {', '.join(_PRECISIONS)}"
            )


@dataclasses.dataclass(frozen=True)
class History:
    """What one training run measured; `val_acc[k]` is the accuracy after epoch k + 1."""

    val_acc: list[float]
    train_loss: list[float]  # mean training loss per epoch
    seconds: float  # wall time of training and evaluation
    device: str
    model: nn.Module = dataclasses.field(repr=False)


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} asked for, but MPS is not available here")
    return device


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, precision: str = "auto") -> float:
    """Top-1 accuracy of `model` over `loader`, with one device sync at the end."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    with _autocast(loader.device, precision):
        for x, y in loader:
            correct += (model(x).argmax(dim=1) == y).sum()
    return correct.item() / len(loader.data)


def train(
    arch: Architecture,
    config: TrainConfig,
    *,
    train_set: ImageData,
    val_set: ImageData,
    on_epoch: Callable[[int, float], None] | None = None,
) -> History:
    """Train a new NanoNet for `arch` on `train_set`; after every epoch measure it on `val_set`
    and call `on_epoch(epoch, val_acc)` (epochs count from 1), which may raise to stop training
    (for example optuna.TrialPruned). Raises DivergedError when the loss stops being finite."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    channels_last = device.type == "cuda"  # what cuDNN's bf16 convolutions are fastest in
    common = dict(device=device, channels_last=channels_last)
    train_loader = DeviceLoader(
        train_set,
        batch_size=config.batch_size,
        augment=config.augment,
        shuffle=True,
        seed=config.seed,
        **common,
    )
    val_loader = DeviceLoader(val_set, batch_size=1024, **common)

    torch.manual_seed(config.seed)
    model = NanoNet(arch, num_classes=train_set.num_classes, in_channels=train_set.images.shape[1])
    model = model.to(device, memory_format=torch.channels_last if channels_last else None)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    total = config.epochs * len(train_loader)
    warmup = max(1, round(config.warmup_epochs * len(train_loader)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total))),
    )

    val_acc: list[float] = []
    train_loss: list[float] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y in train_loader:
            with _autocast(device, config.precision):
                loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach().float()
        mean_loss = loss_sum.item() / len(train_loader)
        if not math.isfinite(mean_loss):
            raise DivergedError(
                f"training loss became {mean_loss} in epoch {epoch} (lr {config.lr}, {arch})"
            )
        train_loss.append(mean_loss)
        val_acc.append(evaluate(model, val_loader, precision=config.precision))
        if on_epoch is not None:
            on_epoch(epoch, val_acc[-1])
    return History(val_acc, train_loss, time.perf_counter() - start, str(device), model)
