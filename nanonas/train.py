"""Train one NanoNet and measure it: the seed's SGD recipe, on whatever device is there.

    history = train(arch, TrainConfig(epochs=10), train_set=train, val_set=val,
                    on_epoch=lambda epoch, acc: print(epoch, acc))

SGD with Nesterov momentum 0.9 and weight decay (the seed nanoNAS's recipe), a short linear
warm-up then cosine decay to zero, label smoothing 0.1. The device is CUDA, then MPS, then the
CPU. Per step the loop never waits for the device (no `.item()`): the loss is summed on the
device and checked once per epoch, when a NaN or infinite sum raises DivergedError.

Speed, by default ("auto"); the measurements are in benchmarks/results/throughput-*.md:
- bf16 autocast on CUDA (where the GPU has bf16) and on CPUs where oneDNN has bf16 kernels
  (AVX-512 or AMX on x86; fp32 elsewhere: MPS, older CPUs and GPUs). With channels_last, on 2
  cores of an AVX-512 CPU, the width-48 NanoNet's training steps ran 2.7x as fast as in fp32
  NCHW (whole trials 2.4x) at the same accuracy; the tests' width 8 runs no slower. There
  model.py keeps dilated and 5x5 depthwise convolutions in fp32 (wrong and slower in bf16).
- channels_last on CUDA and CPU, the layout cuDNN's and oneDNN's fast convolutions want
  (1.4x in fp32 on that CPU at width 48).
- the fused SGD step on CUDA and CPU: one kernel for all parameters, not one per tensor.
- `compile=True` compiles the network piece by piece (stem, each block, reduction, head) with
  static shapes, so the compiled code of a block depends only on its op, width and input shape,
  not on the architecture around it: a later trial that reuses op types and widths reuses the
  code, where compiling the whole network would compile every new architecture again.
  Evaluation runs eagerly. Off by default: it can pay only on a GPU over many trials (on the
  CPU the compiled steps were slower than eager ones, after a minute of compiling).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nanonas.data import DeviceLoader, ImageData
from nanonas.errors import ConfigError, DivergedError
from nanonas.model import NanoNet
from nanonas.space import Architecture

__all__ = ["History", "TrainConfig", "evaluate", "resolve_device", "train"]

_PRECISIONS = ("auto", "bf16", "fp32")
_LAYOUTS = ("auto", "channels_last", "nchw")
# Inductor generates fused kernels; a test swaps in "aot_eager" to check the caching quickly.
_COMPILE_BACKEND = "inductor"


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
    cutout: int = 0  # side in pixels of a square zeroed in every training image; 0: off
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto: bf16 autocast where the device is fast at it | bf16 | fp32
    layout: str = "auto"  # auto: channels_last on CUDA and CPU, NCHW on MPS | channels_last | nchw
    compile: bool = False  # torch.compile each block; pays on a GPU over many trials
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
        if isinstance(self.cutout, bool) or not isinstance(self.cutout, int) or self.cutout < 0:
            raise ConfigError(f"cutout must be an integer >= 0 (pixels), got {self.cutout!r}")
        if self.precision not in _PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; valid: {', '.join(_PRECISIONS)}"
            )
        if self.layout not in _LAYOUTS:
            raise ConfigError(f"unknown layout {self.layout!r}; valid: {', '.join(_LAYOUTS)}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile must be True or False, got {self.compile!r}")


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


@functools.lru_cache
def _fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is fast here: not emulated in software."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:  # oneDNN's own check: AVX-512 (or AMX) on x86, bf16 instructions on Arm
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    bf16 = precision == "bf16" or (precision == "auto" and _fast_bf16(device))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _channels_last(device: torch.device, layout: str) -> bool:
    return layout == "channels_last" or (layout == "auto" and device.type in ("cuda", "cpu"))


def _optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.SGD:
    # fused: one kernel updates every parameter (CUDA and, since torch 2.4, CPU); elsewhere
    # torch's default, the foreach implementation where the device has it.
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
        **fused,
    )


class _Compiled:
    """With `enabled`, the stem, each block that computes something, the reduction and the head
    of `model` compiled each on its own, while the context is open; without, nothing.

    Dynamo caches compiled code per Python function and guards it on the module's attributes
    and tensor shapes, not on the module object, so the block `conv3x3` at 48 channels on
    (256, 48, 32, 32) inputs compiles once per process and every later block like it, in any
    architecture, runs that code. `dynamic=False`: static shapes give the fastest kernels; the
    short last batch of an epoch compiles once more. Each piece's compiled forward is an
    instance attribute that shadows its class's forward: deleting it makes the piece eager.
    """

    def __init__(self, model: NanoNet, *, enabled: bool) -> None:
        pieces: tuple[nn.Module, ...] = ()
        if enabled:
            blocks = [
                b for b in (*model.stage1, *model.stage2) if b.op_name not in ("zero", "skip")
            ]
            pieces = (model.stem, *blocks, model.reduction, model.head)
        self._forwards = {
            piece: torch.compile(piece.forward, dynamic=False, backend=_COMPILE_BACKEND)
            for piece in pieces
        }
        self._limits = contextlib.ExitStack()

    def __enter__(self) -> _Compiled:
        if self._forwards:
            config = torch._dynamo.config
            names = ("recompile_limit", "accumulated_recompile_limit")
            if not hasattr(config, names[0]):  # their names before torch 2.7
                names = ("cache_size_limit", "accumulated_cache_size_limit")
            # Dynamo keeps every compiled variant of a function (op x width x input shape) in
            # one cache; its default of 8 would send most blocks of later trials back to eager.
            self._limits.enter_context(config.patch(**dict(zip(names, (512, 4096), strict=True))))
        self._attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self._detach()  # the model handed back (or left behind by a pruned trial) runs eagerly
        self._limits.close()

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        # Evaluation is a few percent of a trial's work: not worth compiling an inference
        # variant of every block for.
        self._detach()
        try:
            yield
        finally:
            self._attach()

    def _attach(self) -> None:
        for piece, forward in self._forwards.items():
            piece.forward = forward

    def _detach(self) -> None:
        for piece in self._forwards:
            piece.__dict__.pop("forward", None)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DeviceLoader, *, precision: str = "auto", flip: bool = False
) -> float:
    """Top-1 accuracy of `model` over `loader`, with one device sync at the end. With `flip`,
    test-time augmentation: each image's logits are summed with its mirror image's."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    with _autocast(loader.device, precision):
        for x, y in loader:
            logits = model(x)
            if flip:
                logits = logits + model(x.flip(3))
            correct += (logits.argmax(dim=1) == y).sum()
    return correct.item() / len(loader.data)


def train(
    arch: Architecture | None,
    config: TrainConfig,
    *,
    train_set: ImageData,
    val_set: ImageData | None,
    on_epoch: Callable[[int, float], None] | None = None,
    model: nn.Module | None = None,
) -> History:
    """Train a new NanoNet for `arch` on `train_set`; after every epoch measure it on `val_set`
    and call `on_epoch(epoch, val_acc)` (epochs count from 1), which may raise to stop training
    (for example optuna.TrialPruned). Raises DivergedError when the loss stops being finite.

    `val_set=None` trains on everything there is (the final retraining before the one test):
    no accuracy is measured, `History.val_acc` stays empty and `on_epoch` gets NaN for it.
    `model` trains that network (freshly made; `arch` may then be None) in place of a new
    NanoNet, for a baseline trained exactly as the NanoNets are; `compile` must be off."""
    if model is not None and config.compile:
        raise ConfigError("compile works on NanoNets only; train another model with it off")
    start = time.perf_counter()
    device = resolve_device(config.device)
    channels_last = _channels_last(device, config.layout)
    common = dict(device=device, channels_last=channels_last)
    train_loader = DeviceLoader(
        train_set,
        batch_size=config.batch_size,
        augment=config.augment,
        cutout=config.cutout,
        shuffle=True,
        seed=config.seed,
        **common,
    )
    val_loader = None if val_set is None else DeviceLoader(val_set, batch_size=1024, **common)

    torch.manual_seed(config.seed)
    if model is None:
        model = NanoNet(
            arch, num_classes=train_set.num_classes, in_channels=train_set.images.shape[1]
        )
    model = model.to(device, memory_format=torch.channels_last if channels_last else None)
    optimizer = _optimizer(model, config, device)
    total = config.epochs * len(train_loader)
    warmup = max(1, round(config.warmup_epochs * len(train_loader)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total))),
    )

    val_acc: list[float] = []
    train_loss: list[float] = []
    with _Compiled(model, enabled=config.compile) as compiled:
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
                    f"training loss became {mean_loss} in epoch {epoch} (lr {config.lr}, "
                    f"{arch or type(model).__name__})"
                )
            train_loss.append(mean_loss)
            if val_loader is not None:
                with compiled.eager():
                    val_acc.append(evaluate(model, val_loader, precision=config.precision))
            if on_epoch is not None:
                on_epoch(epoch, val_acc[-1] if val_loader is not None else math.nan)
    return History(val_acc, train_loss, time.perf_counter() - start, str(device), model)
