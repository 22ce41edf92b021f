from __future__ import annotations

import math
import sys

import pytest
import torch

from nanonas.data import DeviceLoader
from nanonas.errors import ConfigError, DivergedError
from nanonas.space import Architecture
from nanonas.train import TrainConfig, evaluate, resolve_device, train

GOOD = Architecture.parse("w8:conv3x3,sep_conv3x3,conv3x3,skip/conv3x3,sep_conv3x3,conv3x3,skip")
# the same op types as GOOD, in other places
SHUFFLED = Architecture.parse(
    "w8:sep_conv3x3,skip,conv3x3,conv3x3/conv3x3,conv3x3,skip,sep_conv3x3"
)
CPU = dict(batch_size=64, device="cpu")
_train_module = sys.modules["nanonas.train"]  # `nanonas.train` the attribute is the function


def test_a_good_network_beats_chance_within_one_epoch(synthetic):
    train_set, val_set = synthetic
    # batch 32: 57 steps; over seeds 0-9 the first epoch ended at 0.44-0.77 in bf16 + channels_last
    # (the default on a CPU with AVX-512) and at 0.39-0.80 in fp32
    config = TrainConfig(epochs=1, batch_size=32, device="cpu")
    history = train(GOOD, config, train_set=train_set, val_set=val_set)
    assert len(history.val_acc) == 1
    assert history.val_acc[0] > 0.3  # chance is 0.1 on 200 validation images
    assert history.device == "cpu" and history.seconds > 0


def test_history_has_one_entry_per_epoch_and_learns(synthetic):
    train_set, val_set = synthetic
    seen = []
    history = train(
        GOOD,
        TrainConfig(epochs=3, **CPU),
        train_set=train_set,
        val_set=val_set,
        on_epoch=lambda epoch, acc: seen.append((epoch, acc)),
    )
    assert seen == list(zip([1, 2, 3], history.val_acc, strict=True))
    assert all(0 <= a <= 1 for a in history.val_acc)
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_acc[-1] > 0.6
    # the returned model is the trained one: evaluating it again gives the last accuracy
    loader = DeviceLoader(val_set, batch_size=100, device="cpu", channels_last=True)
    assert evaluate(history.model, loader) == history.val_acc[-1]


def test_same_seed_same_result_other_seed_other_result(synthetic):
    train_set, val_set = synthetic

    def run(seed):
        return train(
            GOOD, TrainConfig(epochs=1, seed=seed, **CPU), train_set=train_set, val_set=val_set
        )

    a, b, c = run(7), run(7), run(8)
    assert a.train_loss == b.train_loss and a.val_acc == b.val_acc
    assert a.train_loss != c.train_loss


def test_on_epoch_can_stop_training(synthetic):
    train_set, val_set = synthetic
    epochs = []

    class Stop(Exception):
        pass

    def on_epoch(epoch, acc):
        epochs.append(epoch)
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(
            GOOD,
            TrainConfig(epochs=5, **CPU),
            train_set=train_set,
            val_set=val_set,
            on_epoch=on_epoch,
        )
    assert epochs == [1, 2]


def test_a_diverging_loss_raises_diverged_error(synthetic):
    train_set, val_set = synthetic
    with pytest.raises(DivergedError, match="loss became nan in epoch 1"):
        train(GOOD, TrainConfig(epochs=3, lr=1e4, **CPU), train_set=train_set, val_set=val_set)


@pytest.mark.parametrize(
    "bad",
    [
        dict(epochs=0),
        dict(batch_size=-1),
        dict(lr=float("nan")),
        dict(momentum=-0.5),
        dict(precision="fp8"),
        dict(epochs=True),
        dict(cutout=-1),
        dict(cutout=2.0),
        dict(layout="nhwc"),
        dict(compile="yes"),
    ],
)
def test_bad_training_config_is_refused(bad):
    ((name, value),) = bad.items()
    with pytest.raises(ConfigError, match=f"{name}.*{value!r}"):
        TrainConfig(**bad)


def test_fast_and_plain_paths_learn_equally_well(synthetic):
    # bf16 autocast + channels_last (the CPU default where oneDNN has bf16) against fp32 NCHW
    train_set, val_set = synthetic
    fast, plain = (
        train(
            GOOD,
            TrainConfig(epochs=3, precision=precision, layout=layout, **CPU),
            train_set=train_set,
            val_set=val_set,
        )
        for precision, layout in (("bf16", "channels_last"), ("fp32", "nchw"))
    )
    assert fast.val_acc[-1] > 0.6 and plain.val_acc[-1] > 0.6, (fast.val_acc, plain.val_acc)
    assert abs(fast.val_acc[-1] - plain.val_acc[-1]) < 0.1
    assert abs(fast.train_loss[-1] - plain.train_loss[-1]) < 0.1 * plain.train_loss[-1]
    assert fast.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_cutout_trains(synthetic):
    train_set, val_set = synthetic
    config = TrainConfig(epochs=1, cutout=4, **CPU)
    cut = train(GOOD, config, train_set=train_set, val_set=val_set)
    plain = train(GOOD, TrainConfig(epochs=1, **CPU), train_set=train_set, val_set=val_set)
    assert cut.train_loss != plain.train_loss and cut.val_acc[0] > 0.2


def test_the_cpu_step_is_fused_sgd():
    model = torch.nn.Linear(2, 2)
    optimizer = _train_module._optimizer(model, TrainConfig(), torch.device("cpu"))
    assert optimizer.defaults["fused"] and optimizer.defaults["nesterov"]


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_compiled_blocks_are_reused_by_later_architectures(synthetic, monkeypatch):
    # aot_eager traces and caches exactly as inductor does but generates no C++ (a minute here)
    monkeypatch.setattr(_train_module, "_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    train_set, val_set = synthetic
    train_set = train_set.subset(torch.arange(320))  # 5 full batches: one batch shape
    config = TrainConfig(epochs=1, compile=True, **CPU)
    ops = "conv3x3,conv5x5,sep_conv3x3,sep_conv5x5/dil_conv3x3,maxpool3x3,avgpool3x3,conv3x3"
    every = Architecture.parse(f"w8:{ops}")  # every op that computes something

    before = _graphs()
    first = train(every, config, train_set=train_set, val_set=val_set)
    assert _graphs() - before == 3 + 8  # stem, reduction, head and the 8 blocks
    before = _graphs()
    same_ops = (
        "w8:sep_conv5x5,sep_conv3x3,conv5x5,conv3x3/conv3x3,avgpool3x3,maxpool3x3,dil_conv3x3"
    )
    train(Architecture.parse(same_ops), config, train_set=train_set, val_set=val_set)
    assert _graphs() == before  # the same ops at the same widths: nothing compiled again
    # the stages swapped: every op but conv3x3 now at a width it was not at, 6 new blocks and
    # 14 variants of the one block function, past Dynamo's default limit of 8
    stage1, stage2 = ops.split("/")
    swapped = Architecture.parse(f"w8:{stage2}/{stage1}")
    train(swapped, config, train_set=train_set, val_set=val_set)
    assert _graphs() - before == 6

    eager = train(every, TrainConfig(epochs=1, **CPU), train_set=train_set, val_set=val_set)
    assert first.train_loss == pytest.approx(eager.train_loss, rel=1e-4)
    assert first.val_acc == eager.val_acc
    # the model handed back runs eagerly: no compiled forward left on any module
    assert not any("forward" in m.__dict__ for m in first.model.modules())


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ConfigError, match="valid: auto, cpu"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_trains_in_bf16_and_channels_last_with_fused_sgd(synthetic):
    train_set, val_set = synthetic
    device = torch.device("cuda")
    assert _train_module._fast_bf16(device)  # so precision "auto" is bf16
    optimizer = _train_module._optimizer(torch.nn.Linear(2, 2).cuda(), TrainConfig(), device)
    assert optimizer.defaults["fused"]
    history = train(
        GOOD,
        TrainConfig(epochs=3, batch_size=64, device="cuda"),
        train_set=train_set,
        val_set=val_set,
    )
    assert history.device.startswith("cuda")
    assert history.val_acc[-1] > 0.4, history.val_acc  # chance is 0.1
    conv = history.model.stem[0].weight
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_compiles_once_for_architectures_that_share_ops(synthetic):
    # the real backend (inductor, Triton kernels); about a minute of compiling the first time
    torch._dynamo.reset()
    train_set, val_set = synthetic
    config = TrainConfig(epochs=2, batch_size=64, device="cuda", compile=True)
    first = train(GOOD, config, train_set=train_set, val_set=val_set)
    before = _graphs()
    second = train(SHUFFLED, config, train_set=train_set, val_set=val_set)
    assert _graphs() == before
    assert first.val_acc[-1] > 0.4 and second.val_acc[-1] > 0.4, (first.val_acc, second.val_acc)


def test_train_without_a_validation_set_measures_nothing_and_still_calls_on_epoch():
    from nanonas.data import load

    arch = Architecture.parse("w8:conv3x3,skip,zero,zero/conv3x3,skip,zero,zero")
    seen = []
    history = train(
        arch,
        TrainConfig(epochs=2, batch_size=128, device="cpu"),
        train_set=load("synthetic"),
        val_set=None,
        on_epoch=lambda epoch, acc: seen.append((epoch, acc)),
    )
    assert history.val_acc == [] and len(history.train_loss) == 2
    assert [e for e, _ in seen] == [1, 2] and all(math.isnan(a) for _, a in seen)
