"""The files of an export folder: model.pt, model.pt2 (torch.export), model.onnx, card.md/json.

    files = write(folder, net=net, saved=saved, card=card, example=x)

Both portable files take what the network's forward takes, normalized float (N, C, H, W), with
the batch size free, and compute in fp32 on the CPU:
- model.pt2, a torch.export program: `torch.export.load("model.pt2").module()(x)` with only
  torch installed (TorchScript is deprecated, so there is none);
- model.onnx, from the dynamo exporter at opset 18, one self-contained file. It needs the
  `onnx` and `onnxscript` packages (`pip install 'nanonas[export]'`); without them the folder
  has no model.onnx and one warning line says so.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nanonas.export.card import markdown

__all__ = ["can_onnx", "warn_no_onnx", "write"]

_MAX_BATCH = 1 << 16  # torch.export wants a bound on a dynamic dimension; any batch up to it


def can_onnx() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def write(
    folder: Path,
    *,
    net: nn.Module,
    saved: dict[str, Any],
    card: dict[str, Any],
    example: torch.Tensor,
) -> None:
    """Write every file of the export into `folder`, which exists and is empty."""
    net = net.eval()
    torch.save(saved, folder / "model.pt")
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    shapes = {"x": {0: batch}}
    program = torch.export.export(net, (example,), dynamic_shapes=shapes)
    torch.export.save(program, folder / "model.pt2")
    if "model.onnx" in card["files"]:
        torch.onnx.export(
            net,
            (example,),
            str(folder / "model.onnx"),
            dynamo=True,
            opset_version=18,
            dynamic_shapes=shapes,
            external_data=False,  # one file: the weights of a NanoNet are a few MB at most
            verbose=False,
        )
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (folder / "card.md").write_text(markdown(card))


def warn_no_onnx() -> None:
    print(
        "nanonas: warning: onnx and onnxscript are not installed, so there is no model.onnx "
        "(pip install 'nanonas[export]')",
        file=sys.stderr,
    )
