from __future__ import annotations

import random
import statistics

import pytest
import torch
import torch.nn.functional as F

from nanonas.model import NanoNet, count_flops, count_params, make_op
from nanonas.space import DEFAULT_WIDTH, OP_NAMES, OPS, Architecture


def _uniform(op: str, width: int = 8) -> Architecture:
    return Architecture((op,) * 4, (op,) * 4, width)


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_op_trains_in_both_stages(op):
    torch.manual_seed(0)
    net = NanoNet(_uniform(op), num_classes=10)
    x = torch.randn(4, 3, 16, 16)
    out = net(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(4)).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("op", OP_NAMES)
def test_each_op_runs_once_per_forward(op):
    net = NanoNet(_uniform(op))
    calls = []
    for block in [*net.stage1, *net.stage2]:
        block.op.register_forward_hook(lambda *_: calls.append(1))
    net(torch.randn(2, 3, 16, 16))
    # zero adds nothing, so its block never computes it
    assert len(calls) == (0 if op == "zero" else 8)


@pytest.mark.parametrize(("channels", "size"), [(8, 32), (48, 32), (96, 16)])  # both stages
@pytest.mark.parametrize("op", [op for op in OP_NAMES if op not in ("skip", "zero")])
def test_bf16_channels_last_gradients_match_fp32_on_the_cpu(op, channels, size):
    # The CPU fast path (train.py) must compute what plain fp32 does, up to bf16 rounding.
    # torch 2.14's CPU kernel got a dilated depthwise convolution's weight gradient wrong (off
    # by over 100%, sometimes NaN) in bf16 channels_last, and real CIFAR trials diverged.
    torch.manual_seed(0)
    module = make_op(op, channels)
    # Inputs and weights that bf16 holds exactly, so only the computation's rounding differs.
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.bfloat16().float())
    x = torch.randn(32, channels, size, size).bfloat16().float()
    out_grad = torch.randn(32, channels, size, size).bfloat16().float()

    def grads(fast: bool) -> list[torch.Tensor]:
        fmt = torch.channels_last if fast else torch.contiguous_format
        net = module.to(memory_format=fmt)
        net.zero_grad()
        inp = x.clone(memory_format=fmt).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            out = net(inp)
        out.float().backward(out_grad.contiguous(memory_format=fmt))
        return [inp.grad, *(p.grad for p in net.parameters())]

    for plain, fast in zip(grads(False), grads(True), strict=True):
        assert torch.isfinite(fast).all()
        error = (fast - plain).abs().max() / plain.abs().max()
        assert error < 0.03, f"{op}: bf16 gradient off by {error:.1%} of the fp32 one"


def test_blocks_are_residual():
    # with every block zero the stages are the identity: stem -> reduction -> head
    net = NanoNet(_uniform("zero")).eval()
    x = torch.randn(2, 3, 16, 16)
    expected = net.head(net.reduction(net.stem(x)))
    assert torch.equal(net(x), expected)


@pytest.mark.parametrize(
    "op", [op for op, spec in OPS.items() if spec.kind in ("conv", "sep_conv", "dil_conv")]
)
def test_ops_with_weights_end_in_batchnorm(op):
    net = NanoNet(_uniform(op))
    assert isinstance(net.stage1[0].op[-1], torch.nn.BatchNorm2d)


def test_param_count_matches_the_layers():
    w = 16
    arch = Architecture(("conv3x3", "skip", "skip", "skip"), ("skip",) * 4, w)
    stem = 3 * w * 9 + 2 * w
    block = w * w * 9 + 2 * w
    reduction = w * 2 * w * 9 + 2 * 2 * w
    head = 2 * w * 10 + 10
    assert count_params(NanoNet(arch)) == stem + block + reduction + head


def test_default_width_is_in_the_seed_size_range():
    rng = random.Random(0)
    sizes = [
        count_params(
            NanoNet(Architecture.from_ops([rng.choice(OP_NAMES) for _ in range(8)], DEFAULT_WIDTH))
        )
        for _ in range(200)
    ]
    assert 150_000 < statistics.median(sizes) < 300_000
    seed_style = Architecture.parse(
        f"w{DEFAULT_WIDTH}:conv3x3,sep_conv3x3,conv3x3,skip/conv3x3,sep_conv3x3,dil_conv3x3,skip"
    )
    assert 150_000 < count_params(NanoNet(seed_style)) < 300_000


def test_flops_known_before_training_and_ordered():
    small = count_flops(_uniform("sep_conv3x3", 16))
    big = count_flops(_uniform("conv5x5", 16))
    none = count_flops(_uniform("zero", 16))
    assert 0 < none < small < big
    # convolutions scale with the pixels; only the tiny classifier does not
    at16 = count_flops(_uniform("conv3x3", 16), image_size=16)
    at32 = count_flops(_uniform("conv3x3", 16), image_size=32)
    assert at32 / at16 == pytest.approx(4, rel=1e-3)
    # a 3x3 conv at w channels on an s x s map: 2 * 9 * w * w * s * s
    one = Architecture(("conv3x3", "zero", "zero", "zero"), ("zero",) * 4, 16)
    assert count_flops(one) - none == 2 * 9 * 16 * 16 * 32 * 32


def test_bad_num_classes_is_refused():
    with pytest.raises(ValueError, match="num_classes"):
        NanoNet(_uniform("skip"), num_classes=1)
