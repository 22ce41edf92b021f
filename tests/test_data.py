from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from PIL import Image

from nanonas import data
from nanonas.errors import ConfigError, DataError


def test_synthetic_is_seeded_balanced_and_uint8():
    a, b = data.load("synthetic"), data.load("synthetic")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.dtype == torch.uint8 and a.images.shape[1:] == (3, 16, 16)
    assert a.num_classes == 10
    assert torch.bincount(a.labels).tolist() == [len(a) // 10] * 10
    test = data.load("synthetic", train=False)
    assert not torch.equal(test.images[: len(test)], a.images[: len(test)])


def test_split_is_seeded_disjoint_and_ten_percent():
    full = data.load("synthetic")
    train, val = data.split(full, seed=3)
    assert (len(train), len(val)) == (len(full) - len(full) // 10, len(full) // 10)
    again, val_again = data.split(full, seed=3)
    assert torch.equal(val.images, val_again.images)
    _, other = data.split(full, seed=4)
    assert not torch.equal(val.labels, other.labels)
    # no validation image is a training image: compare whole images as rows
    rows = {bytes(img.numpy()) for img in train.images}
    assert not any(bytes(img.numpy()) in rows for img in val.images)
    # normalized with the training part's statistics, never the validation images'
    assert train.mean != full.mean and val.mean == train.mean


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_split_rejects_bad_fractions(fraction):
    with pytest.raises(ConfigError, match="val_fraction"):
        data.split(data.load("synthetic"), val_fraction=fraction)


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid datasets: cifar10, cifar100, imagefolder"):
        data.load("mnist")


def test_cifar10_offline_is_one_clear_line(tmp_path):
    # the conftest proxy makes the real download fail the way an offline machine does
    with pytest.raises(DataError) as err:
        data.load("cifar10", data_dir=tmp_path / "empty")
    message = str(err.value)
    assert "\n" not in message
    assert f"--data-dir {tmp_path / 'empty'}" in message and "cifar-10-python.tar.gz" in message


def write_png(img: torch.Tensor, path: str) -> None:
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)


def _write_tree(root, sizes=(8, 8)):
    torch.manual_seed(0)
    images = {}
    for c in ("cat", "dog", "emu"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(3):
            img = torch.randint(0, 256, (3, *sizes), dtype=torch.uint8)
            write_png(img, str(root / "train" / c / f"{i}.png"))
            images[(c, i)] = img
    return images


def test_imagefolder_decodes_every_image_and_caches(tmp_path):
    written = _write_tree(tmp_path / "ds")
    d = data.load("imagefolder", data_dir=tmp_path / "ds")
    assert d.classes == ("cat", "dog", "emu")
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.equal(d.images[4], written[("dog", 1)])  # PNG is lossless
    cached = list((tmp_path / "cache" / "nanonas").iterdir())
    assert len(cached) == 1
    again = data.load("imagefolder", data_dir=tmp_path / "ds")
    assert torch.equal(again.images, d.images)
    # a rewritten image changes the cache key: the tree is decoded again
    new = torch.zeros(3, 8, 8, dtype=torch.uint8)
    write_png(new, str(tmp_path / "ds" / "train" / "dog" / "1.png"))
    os.utime(tmp_path / "ds" / "train" / "dog" / "1.png", ns=(1, 1))
    assert torch.equal(data.load("imagefolder", data_dir=tmp_path / "ds").images[4], new)


def test_imagefolder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nothing" / "train")):
        data.load("imagefolder", data_dir=tmp_path / "nothing")
    (tmp_path / "one" / "train" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least 2 class folders"):
        data.load("imagefolder", data_dir=tmp_path / "one")


@pytest.mark.parametrize("damage", ["not an image", "truncated"])
def test_imagefolder_with_undecodable_files_is_one_line_naming_one_and_counting_them(
    tmp_path, damage
):
    _write_tree(tmp_path / "ds")
    bad = [tmp_path / "ds" / "train" / c / "9.jpg" for c in ("cat", "emu")]
    for path in bad:
        if damage == "truncated":  # a real JPEG cut after its header
            write_png(torch.zeros(3, 8, 8, dtype=torch.uint8), str(path))  # PIL writes JPEG
            path.write_bytes(path.read_bytes()[:200])
        else:
            path.write_bytes(b"this is not a JPEG")
    with pytest.raises(DataError) as e:
        data.load("imagefolder", data_dir=tmp_path / "ds")
    message = str(e.value)
    assert "\n" not in message and f"cannot decode {bad[0]}" in message
    assert "2 of 11 image files cannot be decoded" in message
    assert not (tmp_path / "cache" / "nanonas").exists()  # nothing cached


def _raw(d: data.ImageData) -> data.ImageData:
    """The same images with a normalization that leaves pixel values as they are."""
    channels = d.images.shape[1]
    return dataclasses.replace(d, mean=(0.0,) * channels, std=(1 / 255,) * channels)


def test_loader_without_augmentation_yields_every_image_once(synthetic):
    train, _ = synthetic
    loader = data.DeviceLoader(_raw(train), batch_size=256, device="cpu")
    xs, ys = zip(*loader, strict=True)
    assert len(xs) == len(loader)
    assert torch.equal(torch.cat(xs), train.images.float())
    assert torch.equal(torch.cat(ys), train.labels)


def test_loader_normalizes_to_zero_mean_unit_std(synthetic):
    train, _ = synthetic
    x = torch.cat([x for x, _ in data.DeviceLoader(train, batch_size=512, device="cpu")])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.02
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.02


def _windows(img: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop of the zero-padded image, and its mirror images."""
    padded = torch.nn.functional.pad(img, (pad,) * 4)
    h, w = img.shape[1:]
    crops = [
        padded[:, y : y + h, x : x + w] for y in range(2 * pad + 1) for x in range(2 * pad + 1)
    ]
    return crops + [c.flip(2) for c in crops]


def test_augmentation_is_a_padded_crop_and_a_flip_per_image():
    # distinct values everywhere, so a crop or flip shows in every pixel
    torch.manual_seed(0)
    images = torch.randint(1, 256, (64, 3, 16, 16), dtype=torch.uint8)
    d = _raw(data.ImageData.create(images, torch.zeros(64, dtype=torch.int64), ("a", "b")))
    loader = data.DeviceLoader(d, batch_size=64, device="cpu", augment=True, seed=1)
    ((x, _),) = list(loader)
    assert x.shape == images.shape and x.min() >= 0 and x.max() <= 255
    flipped = shifted = 0
    for out, img in zip(x.to(torch.uint8), images, strict=True):
        matches = [i for i, c in enumerate(_windows(img, pad=2)) if torch.equal(c, out)]
        assert matches, "output is no padded crop of its input"
        flipped += matches[0] >= 25
        shifted += matches[0] % 25 != 12  # 12: the centre crop, no shift
    assert 16 < flipped < 48  # about half flipped
    assert shifted > 40  # most images moved


def test_augmentation_is_seeded(synthetic):
    train, _ = synthetic

    def first(seed):
        return next(
            iter(
                data.DeviceLoader(
                    train,
                    batch_size=32,
                    device="cpu",
                    augment=True,
                    cutout=4,
                    shuffle=True,
                    seed=seed,
                )
            )
        )[0]

    assert torch.equal(first(5), first(5))
    assert not torch.equal(first(5), first(6))


def _coordinates(n: int, size: int) -> data.ImageData:
    """Images whose channel 0 is the row + 1 and channel 1 the column + 1 of each pixel, and
    channel 2 is 200: where any pixel of a crop came from can be read off it; padding is 0."""
    rows = torch.arange(1, size + 1).view(size, 1).expand(size, size)
    img = torch.stack([rows, rows.T, torch.full((size, size), 200)]).to(torch.uint8)
    images = img.expand(n, 3, size, size).contiguous()
    return _raw(data.ImageData.create(images, torch.zeros(n, dtype=torch.int64), ("a", "b")))


def _shift(crop: torch.Tensor, pad: int) -> tuple[int, int] | None:
    """(dy, dx) if `crop` of a `_coordinates` image is that image shifted by at most `pad`
    pixels with zeros coming in, else None."""
    size = crop.shape[-1]
    real = crop[2] == 200
    if (crop[:, ~real] != 0).any():
        return None  # what is not the image must be zero padding
    row, col = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    dy = (crop[0].long() - 1 - row)[real].unique()
    dx = (crop[1].long() - 1 - col)[real].unique()
    if len(dy) != 1 or len(dx) != 1 or max(abs(dy.item()), abs(dx.item())) > pad:
        return None
    return dy.item(), dx.item()


@pytest.mark.parametrize("channels_last", [False, True])
def test_crops_are_shifts_within_the_padding_and_flips_mirror(channels_last):
    size, pad = 16, 2  # the loader pads by 1/8 of the side
    loader = data.DeviceLoader(
        _coordinates(256, size),
        batch_size=256,
        device="cpu",
        augment=True,
        seed=3,
        channels_last=channels_last,
    )
    ((x, _),) = list(loader)
    assert x.dtype == torch.float32 and x.shape == (256, 3, size, size)
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    shifts, flipped = set(), 0
    for out in x.to(torch.uint8):
        plain, mirrored = _shift(out, pad), _shift(out.flip(2), pad)
        assert (plain is None) != (mirrored is None), "not one shifted crop, flipped or not"
        shifts.add(plain or mirrored)
        flipped += mirrored is not None
    assert 80 < flipped < 176  # about half of 256
    assert len(shifts) > 20  # of the 25 possible


def test_small_images_are_only_flipped():
    # under 8 pixels the padding is 0: an image either stays or is exactly its mirror
    torch.manual_seed(0)
    images = torch.randint(0, 256, (100, 3, 7, 7), dtype=torch.uint8)
    d = _raw(data.ImageData.create(images, torch.zeros(100, dtype=torch.int64), ("a", "b")))
    ((x, _),) = list(data.DeviceLoader(d, batch_size=100, device="cpu", augment=True))
    x = x.to(torch.uint8)
    flipped = (x == images.flip(3)).flatten(1).all(1)
    kept = (x == images).flatten(1).all(1)
    assert (flipped | kept).all()
    assert torch.equal(x[flipped], images.flip(3)[flipped])
    assert 25 < flipped.sum() < 75


@pytest.mark.parametrize("size", [1, 5, 16])
def test_cutout_zeroes_one_square_of_the_requested_size(size):
    torch.manual_seed(0)
    images = torch.randint(1, 256, (64, 3, 16, 16), dtype=torch.uint8)  # no zero pixel
    d = _raw(data.ImageData.create(images, torch.zeros(64, dtype=torch.int64), ("a", "b")))
    ((x, _),) = list(data.DeviceLoader(d, batch_size=64, device="cpu", cutout=size, seed=2))
    corners = set()
    for out, img in zip(x, images.float(), strict=True):
        zero = out == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # all channels
        rows, cols = zero[0].nonzero().unbind(1)
        assert zero[0].sum() == size * size
        assert rows.max() - rows.min() == cols.max() - cols.min() == size - 1  # a square
        assert torch.equal(out[~zero], img[~zero])  # and nothing else changed
        corners.add((rows.min().item(), cols.min().item()))
    assert len(corners) > 10 or size == 16  # placed at random (a 16 x 16 square has one place)


def test_cutout_is_zero_after_normalization_and_checked(synthetic):
    train, _ = synthetic
    plain = next(iter(data.DeviceLoader(train, batch_size=32, device="cpu")))[0]
    cut = next(iter(data.DeviceLoader(train, batch_size=32, device="cpu", cutout=4)))[0]
    changed = cut != plain
    assert (cut[changed] == 0).all()  # zero is the mean colour, not black
    assert changed.flatten(1).sum(1).max() <= 3 * 4 * 4
    for bad in (-1, 17, 2.5, True):
        with pytest.raises(ConfigError, match=f"cutout must be .* got {bad!r}"):
            data.DeviceLoader(train, batch_size=32, device="cpu", cutout=bad)


def test_channels_last_changes_the_layout_not_the_values(synthetic):
    train, _ = synthetic

    def batches(channels_last):
        loader = data.DeviceLoader(
            train,
            batch_size=300,
            device="cpu",
            augment=True,
            cutout=3,
            shuffle=True,
            seed=4,
            channels_last=channels_last,
        )
        return list(loader)

    for (a, ya), (b, yb) in zip(batches(False), batches(True), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
        assert b.is_contiguous(memory_format=torch.channels_last)


def test_split_normalizes_with_the_training_part_alone():
    # A validation part brighter than the rest: statistics over all images would move.
    full = data.load("synthetic")
    images = full.images.clone()
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
    n_val = round(len(full) * 0.1)
    images[perm[:n_val]] = 255
    images_data = data.ImageData.create(images, full.labels, full.classes)
    train, val = data.split(images_data, val_fraction=0.1, seed=0)
    assert bool((val.images == 255).all()) and not bool((train.images == 255).all())
    expected = data.ImageData.create(train.images, train.labels, train.classes)
    assert train.mean == expected.mean and train.std == expected.std
    assert val.mean == train.mean and val.std == train.std
    assert train.mean != images_data.mean  # the validation images are not in them


def test_imagefolder_test_split_is_test_or_val_and_its_absence_is_one_line(tmp_path):
    for split_name in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split_name / c).mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / split_name / c / "0.png")
    assert len(data.load("imagefolder", data_dir=tmp_path, train=False)) == 2
    (tmp_path / "val").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="imagefolder has no test split: neither .*test nor .*val"):
        data.load("imagefolder", data_dir=tmp_path, train=False)
