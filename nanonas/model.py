"""NanoNet, the network an Architecture describes, and its size before any training.

    stem (3x3 conv) -> stage 1: residual blocks at `width` channels
    -> reduction (stride 2, width x2) -> stage 2: residual blocks at 2 x `width`
    -> global average pool -> linear classifier

Every block computes `x + op(x)` with its op evaluated once per forward. Because blocks are
residual, `zero` removes a block (the network gets shallower) and no op can cut the signal.
Ops with weights are ReLU -> conv -> BatchNorm, the order DARTS uses inside residual cells.

    >>> from nanonas.space import Architecture
    >>> arch = Architecture.parse("w48:conv3x3,skip,sep_conv3x3,zero/conv3x3,maxpool3x3,skip,zero")
    >>> net = NanoNet(arch)
    >>> count_params(net)
    150826
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nanonas.space import OPS, Architecture, OpSpec

__all__ = ["NanoNet", "count_flops", "count_params", "make_op"]


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class _Depthwise(nn.Conv2d):
    """A depthwise convolution that computes in fp32 under CPU autocast unless it is 3x3 and
    undilated.

    Why: in bf16 on channels_last tensors, torch 2.14's CPU kernel for a dilated depthwise
    convolution returns a wrong weight gradient at 32x32 (off by over 100%, sometimes NaN, so
    real CIFAR trials diverged; tests/test_model.py checks every op), and the dilated and 5x5
    depthwise kernels are slower in bf16 than in fp32 there (one op's training step at batch
    256, on AVX-512 BF16: dilated 178 -> 136 ms at width 48 and 32x32, 78 -> 43 ms at 96 and
    16x16; 5x5 181 -> 145 and 80 -> 41 ms). The 3x3 one is right and faster in bf16 (45
    against 87 ms), so it stays. The cost: the fp32 copy of the input kept for the backward.
    """

    def __init__(self, channels: int, kernel: int, *, padding: int, dilation: int) -> None:
        super().__init__(
            channels,
            channels,
            kernel,
            padding=padding,
            dilation=dilation,
            groups=channels,
            bias=False,
        )
        self._fp32_on_cpu = kernel != 3 or dilation != 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fp32_on_cpu and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def _conv_bn(channels: int, spec: OpSpec) -> nn.Sequential:
    pad = spec.dilation * (spec.kernel - 1) // 2  # keeps the spatial size
    if spec.kind == "conv":
        convs = [nn.Conv2d(channels, channels, spec.kernel, padding=pad, bias=False)]
    else:  # sep_conv and dil_conv: depthwise (possibly dilated) then pointwise, as in DARTS
        convs = [
            _Depthwise(channels, spec.kernel, padding=pad, dilation=spec.dilation),
            nn.Conv2d(channels, channels, 1, bias=False),
        ]
    return nn.Sequential(nn.ReLU(), *convs, nn.BatchNorm2d(channels))


def make_op(name: str, channels: int) -> nn.Module:
    """The module for op `name` at `channels` channels; shape-preserving (stride 1)."""
    spec = OPS[name]
    if spec.kind in ("conv", "sep_conv", "dil_conv"):
        return _conv_bn(channels, spec)
    if spec.kind == "max_pool":
        return nn.MaxPool2d(spec.kernel, stride=1, padding=spec.kernel // 2)
    if spec.kind == "avg_pool":
        # count_include_pad=False: border pixels are averaged over real neighbours only
        return nn.AvgPool2d(
            spec.kernel, stride=1, padding=spec.kernel // 2, count_include_pad=False
        )
    if spec.kind == "skip":
        return nn.Identity()
    if spec.kind == "zero":
        return _Zero()
    raise AssertionError(f"op {name!r} has unknown kind {spec.kind!r}")


class _Block(nn.Module):
    def __init__(self, op: str, channels: int) -> None:
        super().__init__()
        self.op_name = op
        self.op = make_op(op, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op_name == "zero":  # x + 0: skip the work of computing zeros
            return x
        return x + self.op(x)


class NanoNet(nn.Module):
    """The CNN that `arch` describes, for `in_channels`-channel images and `num_classes` classes."""

    def __init__(self, arch: Architecture, *, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.arch = arch
        w = arch.width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)
        )
        self.stage1 = nn.Sequential(*(_Block(op, w) for op in arch.stage1))
        self.reduction = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
        )
        self.stage2 = nn.Sequential(*(_Block(op, 2 * w) for op in arch.stage2))
        self.head = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.stem(x))
        x = self.stage2(self.reduction(x))
        return self.head(x)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=1024)
def count_flops(
    arch: Architecture, *, image_size: int = 32, in_channels: int = 3, num_classes: int = 10
) -> int:
    """Forward FLOPs for one image, known before training.

    Counted by torch.utils.flop_counter (convolutions and matmuls; a multiply-add counts 2) on
    the meta device, so it allocates no weights and computes nothing.
    """
    with torch.device("meta"):
        model = NanoNet(arch, num_classes=num_classes, in_channels=in_channels)
        x = torch.empty(1, in_channels, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    return counter.get_total_flops()
