from __future__ import annotations

import pytest
import torch

from nanonas.data import DeviceLoader
from nanonas.errors import ConfigError, DivergedError
from nanonas.space import Architecture
from nanonas.train import TrainConfig, evaluate, resolve_device, train

GOOD = Architecture.parse("w8:conv3x3,sep_conv3x3,conv3x3,skip/conv3x3,sep_conv3x3,conv3x3,skip")
CPU = dict(batch_size=64, device="cpu")


def test_a_good_network_beats_chance_within_one_epoch(synthetic):
    train_set, val_set = synthetic
    # batch 32: 57 steps; over seeds 0-9 the first epoch ended at 0.39-0.80
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
    loader = DeviceLoader(val_set, batch_size=100, device="cpu")
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
    ],
)
def test_bad_training_config_is_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ConfigError, match="valid: auto, cpu"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_trains_in_bf16_and_channels_last(synthetic):
    train_set, val_set = synthetic
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
