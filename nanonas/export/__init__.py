"""`python -m nanonas.export`: retrain a study's chosen trial, test it once, save it, load it back.

    python -m nanonas.export --storage sqlite:///nanonas.db --trial 12   # export-<study>-trial-12/
    model = nanonas.load_model("export-nanonas-cifar10-accuracy-trial-12")
    model.predict(images), model.test_acc, model.card

- pick.py: which study and which trial (best, --trial N, or a Pareto member within a budget)
- run.py: retrain on train + validation, test with and without flips, write all or nothing
- save.py: model.pt, model.pt2 (torch.export), model.onnx (opset 18), the card files
- card.py: the model card, JSON and Markdown
- load.py: load_model() and ExportedNet, whose predict() takes images as they come
- cli.py: the flags
"""

from __future__ import annotations

from nanonas.export.load import ExportedNet, load_model
from nanonas.export.run import DEFAULT_EPOCHS, export

__all__ = ["DEFAULT_EPOCHS", "ExportedNet", "export", "load_model"]
