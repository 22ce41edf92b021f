"""Datasets as uint8 tensors, the seeded train/validation split, and a device-resident loader.

Every dataset loads into one `ImageData`: all images as a uint8 tensor (N, C, H, W) and their
labels. Training never goes through a DataLoader: `DeviceLoader` keeps the uint8 images on the
training device and crops, flips, normalizes (and cuts out) each batch there, so a trial does no
per-image Python work and no host-to-device copy per step.

    cifar10, cifar100   torchvision, downloaded into --data-dir on first use
    imagefolder         any --data-dir/train/<class>/*.{jpg,png} tree (test/ or val/ beside it
                        is its test split),
                        decoded once and cached as uint8 tensors
    synthetic           a seeded, learnable stand-in for tests and offline demos

The search reads only the training set, split into train and validation (`split`); a test split
is loaded only when asked for by name (`load(..., train=False)`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import socket
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from nanonas.errors import ConfigError, DataError

__all__ = ["DATASETS", "DeviceLoader", "ImageData", "load", "split"]


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Images as uint8 (N, C, H, W) and int64 labels (N,), on any device, with the per-channel
    mean and std (in [0, 1]) that training normalizes with; `create` computes them."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def create(
        cls, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]
    ) -> ImageData:
        mean, std = _channel_stats(images)
        return cls(images, labels, classes, mean, std)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"{len(self.images)} images but labels of shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def subset(self, index: torch.Tensor) -> ImageData:
        """The images at `index`, normalized as the whole set is (stats are not recomputed)."""
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index])

    def normalized_as(self, other: ImageData) -> ImageData:
        """These images, normalized with `other`'s statistics: a validation or test set is
        normalized as the set the network trained on, never with statistics of its own."""
        return dataclasses.replace(self, mean=other.mean, std=other.std)

    def to(self, device: torch.device | str) -> ImageData:
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device)
        )


# --- datasets --------------------------------------------------------------------------------


def _torchvision(name: str, cls_name: str, url: str) -> Callable[[Path, bool], ImageData]:
    def load_split(data_dir: Path, train: bool) -> ImageData:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        try:
            ds = cls(str(data_dir), train=train, download=False)
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            ds = _download(name, cls, data_dir, train, url)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(ds.targets, dtype=torch.int64)
        return ImageData.create(images, labels, tuple(ds.classes))

    return load_split


def _download(name: str, cls: type, data_dir: Path, train: bool, url: str) -> object:
    # A bounded wait: behind a firewall that drops packets a download would otherwise hang.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    created = not data_dir.exists()
    try:
        return cls(str(data_dir), train=train, download=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        if created:  # a failed first download leaves nothing behind, not even the folder
            shutil.rmtree(data_dir, ignore_errors=True)
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"{name} is not in --data-dir {data_dir} and could not be downloaded ({reason}); "
            f"put the archive from {url} into {data_dir} (or point --data-dir at a folder that "
            f"has it) and run again"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _imagefolder(data_dir: Path, train: bool) -> ImageData:
    root = data_dir / "train"
    if not train:
        # torchvision's ImageNet layout names its held-out split val/; others name it test/.
        found = [data_dir / n for n in ("test", "val") if (data_dir / n).is_dir()]
        if not found:
            raise DataError(
                f"imagefolder has no test split: neither {data_dir / 'test'} nor "
                f"{data_dir / 'val'} exists (put held-out images there, one folder per class)"
            )
        root = found[0]
    if not root.is_dir():
        raise DataError(
            f"imagefolder needs {root}/<class>/<image files>; {root} does not exist "
            f"(set --data-dir to the folder that holds train/)"
        )
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    files = [
        (f, label)
        for label, c in enumerate(classes)
        for f in sorted((root / c).iterdir())
        if f.suffix.lower() in _IMAGE_SUFFIXES
    ]
    if len(classes) < 2 or not files:
        raise DataError(
            f"imagefolder found {len(classes)} class folders and {len(files)} images "
            f"under {root}; it needs at least 2 class folders of .jpg/.png files"
        )
    # The cache key changes whenever a file is added, removed or rewritten.
    key = hashlib.sha256(str(root.resolve()).encode())
    for f, _ in files:
        st = f.stat()
        key.update(f"{f.name}{st.st_size}{st.st_mtime_ns}".encode())
    cache = _cache_dir() / f"imagefolder-{key.hexdigest()[:16]}.pt"
    if cache.exists():
        saved = torch.load(cache)
        return ImageData.create(saved["images"], saved["labels"], tuple(saved["classes"]))
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    data = ImageData.create(_decode_all([f for f, _ in files]), labels, classes)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")  # written then renamed: a killed run leaves no half cache
    torch.save({"images": data.images, "labels": data.labels, "classes": list(classes)}, tmp)
    tmp.replace(cache)
    return data


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nanonas"


def _decode_all(files: list[Path]) -> torch.Tensor:
    import numpy as np
    from PIL import Image  # comes with torchvision; torchvision.io's decoders are deprecated

    def decode(f: Path) -> np.ndarray:
        with Image.open(f) as img:
            return np.asarray(img.convert("RGB"))

    images, first, bad = None, files[0], []
    for i, f in enumerate(files):
        try:
            img = decode(f)
        except (OSError, SyntaxError, ValueError):  # what PIL raises for a file it cannot read
            bad.append(f)  # every file is tried, so that the one line can count them all
            continue
        if images is None:
            first = f
            images = np.empty((len(files), *img.shape), dtype=np.uint8)
        elif img.shape != images.shape[1:]:
            raise DataError(
                f"imagefolder images must share one size: {first} is "
                f"{images.shape[2]}x{images.shape[1]}, {f} is {img.shape[1]}x{img.shape[0]}"
            )
        images[i] = img
    if bad:
        raise DataError(
            f"imagefolder cannot decode {bad[0]}: {len(bad)} of {len(files)} image files cannot "
            "be decoded (corrupt, truncated or not an image); fix or remove them"
        )
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _synthetic(data_dir: Path, train: bool) -> ImageData:
    """Ten classes of noisy gratings: 5 spatial frequencies x 2 orientations, with a random phase,
    colour and brightness per image. Colour says nothing about the class and flips or shifts keep
    it, so a network must learn spatial structure, which a good one does within one epoch."""
    n, size = (2000, 16) if train else (500, 16)
    g = torch.Generator().manual_seed(1234 if train else 4321)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    freq = torch.tensor([1.0, 1.5, 2.0, 3.0, 4.0])[labels // 2]  # cycles per image
    coords = torch.arange(size, dtype=torch.float32) / size
    phase = torch.rand(n, generator=g) * 2 * math.pi
    wave = torch.sin(2 * math.pi * freq[:, None] * coords[None, :] + phase[:, None])  # (n, size)
    vertical = (labels % 2 == 1)[:, None, None]
    pattern = torch.where(
        vertical, wave[:, None, :].expand(n, size, size), wave[:, :, None].expand(n, size, size)
    )
    colour = torch.rand(n, 3, 1, 1, generator=g) * 0.8 + 0.2
    base = torch.rand(n, 1, 1, 1, generator=g) * 0.4 + 0.3
    noise = torch.randn(n, 3, size, size, generator=g) * 0.25
    images = base + 0.25 * colour * pattern[:, None] + noise
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    classes = tuple(
        f"{'vertical' if o else 'horizontal'}-{f:g}" for f in (1, 1.5, 2, 3, 4) for o in (0, 1)
    )
    return ImageData.create(images, labels, classes)


DATASETS: dict[str, Callable[[Path, bool], ImageData]] = {
    "cifar10": _torchvision(
        "cifar10", "CIFAR10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    ),
    "cifar100": _torchvision(
        "cifar100", "CIFAR100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    ),
    "imagefolder": _imagefolder,
    "synthetic": _synthetic,
}


def load(name: str, *, data_dir: str | Path = "data", train: bool = True) -> ImageData:
    """Load dataset `name`'s training (or test) set as uint8 tensors on the CPU."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name](Path(data_dir), train)


def split(
    data: ImageData, *, val_fraction: float = 0.1, seed: int = 0
) -> tuple[ImageData, ImageData]:
    """A seeded random train/validation split of a training set. Both parts are normalized
    with the statistics of the training part alone: the validation images, which score the
    trials, must not shape the inputs the network trains on."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = max(1, round(len(data) * val_fraction))
    if n_val >= len(data):
        raise ConfigError(f"{len(data)} images are too few for a validation split")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    kept = data.subset(perm[n_val:])
    train = ImageData.create(kept.images, kept.labels, kept.classes)
    return train, data.subset(perm[:n_val]).normalized_as(train)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], in chunks to bound memory."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


# --- the device-resident loader --------------------------------------------------------------


class DeviceLoader:
    """Batches of (normalized float images, labels), made on `device` from uint8 data held there.

    With `augment`, each batch gets a random crop after zero padding (1/8 of the image side, so
    4 pixels for CIFAR) and a random horizontal flip, as in the standard CIFAR recipe; `cutout`
    then sets a random `cutout` x `cutout` square of every image, wholly inside it, to zero after
    normalization (the dataset's mean colour), as DeVries and Taylor do. The order and the
    augmentation come from a seeded generator on `device`: the same seed gives the same batches.
    Nothing here waits for the device, so a GPU runs ahead of the Python loop.
    """

    def __init__(
        self,
        data: ImageData,
        *,
        batch_size: int,
        device: torch.device | str,
        augment: bool = False,
        cutout: int = 0,
        shuffle: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        size = min(data.images.shape[-2:])
        if isinstance(cutout, bool) or not isinstance(cutout, int) or not 0 <= cutout <= size:
            raise ConfigError(
                f"cutout must be an integer from 0 to the image size {size}, got {cutout!r}"
            )
        self.device = torch.device(device)
        self.data = data.to(self.device)
        self.batch_size = batch_size
        self.augment = augment
        self.cutout = cutout
        self.shuffle = shuffle
        self.channels_last = channels_last
        self._mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1) * 255
        self._std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1) * 255
        self._gen = torch.Generator(device=self.device).manual_seed(seed)
        self._pad = data.image_size // 8

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        order = (
            torch.randperm(n, generator=self._gen, device=self.device)
            if self.shuffle
            else torch.arange(n, device=self.device)
        )
        for index in order.split(self.batch_size):
            x = self.data.images[index]
            if self.augment:
                x = self._crop_and_flip(x)
            if self.channels_last:  # converted as uint8: a quarter of the bytes of the floats
                x = x.contiguous(memory_format=torch.channels_last)
            x = x.float().sub_(self._mean).div_(self._std)  # .float() keeps the memory format
            if self.cutout:
                x = self._cut_out(x)
            yield x, self.data.labels[index]

    def _crop_and_flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop with zero padding and random horizontal flip, on uint8, per image.

        One gather does both: every output pixel reads its source at a flat offset into the
        padded image, and a flipped image reads its columns backwards. On one core of the
        development CPU that takes 1 ms per 512 CIFAR images, against 16 ms for the advanced
        indexing and separate flip it replaced (same random draws, same batches); see
        benchmarks/results/throughput-cpu.md.
        """
        n, c, h, w = x.shape
        p = self._pad
        arange_h = torch.arange(h, device=self.device)
        arange_w = torch.arange(w, device=self.device)
        dy = torch.randint(0, 2 * p + 1, (n, 1), generator=self._gen, device=self.device)
        dx = torch.randint(0, 2 * p + 1, (n, 1), generator=self._gen, device=self.device)
        flip = torch.rand(n, 1, generator=self._gen, device=self.device) < 0.5
        rows = dy + arange_h  # (n, h): rows of the padded image
        cols = dx + torch.where(flip, arange_w.flip(0), arange_w)  # (n, w)
        offsets = rows[:, :, None] * (w + 2 * p) + cols[:, None, :]  # (n, h, w)
        padded = F.pad(x, (p, p, p, p)).reshape(n, c, -1)
        index = offsets.view(n, 1, h * w).expand(n, c, h * w)
        return padded.gather(2, index).view(n, c, h, w)

    def _cut_out(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s = self.cutout
        top = torch.randint(0, h - s + 1, (n, 1, 1, 1), generator=self._gen, device=self.device)
        left = torch.randint(0, w - s + 1, (n, 1, 1, 1), generator=self._gen, device=self.device)
        rows = torch.arange(h, device=self.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=self.device).view(1, 1, 1, w)
        square = (rows >= top) & (rows < top + s) & (cols >= left) & (cols < left + s)
        return x.masked_fill_(square, 0.0)
