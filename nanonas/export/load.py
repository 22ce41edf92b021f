"""Load an exported network back: `nanonas.load_model(folder)`.

    model = nanonas.load_model("export-nanonas-cifar10-accuracy-trial-12")
    model(x)                      # normalized float (N, C, H, W) -> logits, as any nn.Module
    model.predict(images)         # uint8 HWC/CHW tensors, a batch, PIL images -> class indices
    model.classes, model.mean, model.std, model.card, model.test_acc, model.arch

model.pt holds only tensors, strings and numbers, so it loads with `weights_only=True` (no
pickled code runs). The .pt2 and .onnx files beside it need no nanonas at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nanonas.model import NanoNet
from nanonas.space import Architecture

__all__ = ["FORMAT", "ExportedNet", "load_model"]

FORMAT = "nanonas-export-1"  # model.pt's layout; a later layout gets a new name


class ExportedNet(nn.Module):
    """A trained NanoNet with what it needs to be used: class names, the input normalization,
    and its model card. `forward` takes normalized floats (what the .pt2 and ONNX files take);
    `predict` takes images as they come."""

    def __init__(
        self,
        *,
        net: NanoNet,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        card: dict[str, Any],
    ) -> None:
        super().__init__()
        self.net = net
        self.classes = tuple(classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.card = card
        # Not in the state dict: model.pt keeps the NanoNet's weights alone, loadable by itself.
        self.register_buffer("_scale", torch.tensor(self.std).view(1, -1, 1, 1) * 255, False)
        self.register_buffer("_shift", torch.tensor(self.mean).view(1, -1, 1, 1) * 255, False)

    @property
    def arch(self) -> Architecture:
        return self.net.arch

    @property
    def test_acc(self) -> float | None:
        """Accuracy on the test split after retraining (without flips), as the card says."""
        return self.card.get("test_acc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, images: Any) -> torch.Tensor | int:
        """Class indices of `images`: a uint8 (H, W, C) or (C, H, W) tensor or array, a batch of
        them (N, ...), a PIL image, or a list of any of these. One image gives an int, a batch a
        LongTensor. Float input is taken as already scaled to [0, 1]."""
        batch, single = self._as_batch(images)
        was_training = self.training
        self.eval()
        try:
            x = (batch.to(self._shift.device).float() - self._shift) / self._scale
            out = self.net(x).argmax(dim=1).cpu()
        finally:
            self.train(was_training)
        return int(out[0]) if single else out

    def _as_batch(self, images: Any) -> tuple[torch.Tensor, bool]:
        channels = len(self.mean)
        if isinstance(images, (list, tuple)):
            parts = [self._as_batch(image)[0] for image in images]
            return torch.cat(parts), False
        if not isinstance(images, (torch.Tensor, np.ndarray)):  # a PIL image
            mode = "L" if channels == 1 else "RGB"
            images = np.array(images.convert(mode))  # a copy: PIL's buffer is read-only
            if images.ndim == 2:
                images = images[:, :, None]
        x = images if isinstance(images, torch.Tensor) else torch.tensor(images)
        if x.is_floating_point():
            x = x * 255
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(
                f"images must be (H, W, C), (C, H, W) or a batch; got {tuple(x.shape)}"
            )
        if x.shape[1] != channels and x.shape[-1] == channels:  # HWC -> CHW
            x = x.permute(0, 3, 1, 2)
        size = self.card.get("data", {}).get("image_size")
        if x.shape[1] != channels or (size and tuple(x.shape[-2:]) != (size, size)):
            raise ValueError(
                f"images must have {channels} channels and {size}x{size} pixels, got shape "
                f"{tuple(x.shape)}"
            )
        return x, single


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> ExportedNet:
    """The network exported into folder `path` (or its model.pt), in eval mode."""
    path = Path(path)
    file = path / "model.pt" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no exported model at {file} (an export folder has model.pt)")
    saved = torch.load(file, map_location=map_location, weights_only=True)
    if saved.get("format") != FORMAT:
        raise ValueError(f"{file} is not a nanonas export ({FORMAT})")
    arch = Architecture.parse(saved["arch"])
    net = NanoNet(arch, num_classes=len(saved["classes"]), in_channels=saved["in_channels"])
    net.load_state_dict(saved["state_dict"])
    model = ExportedNet(
        net=net, classes=saved["classes"], mean=saved["mean"], std=saved["std"], card=saved["card"]
    )
    return model.to(map_location).eval()
