"""The model card of an exported network, as JSON (for programs) and Markdown (for people).

    card = make_card(...)                    # a dict of JSON values
    markdown(card)                           # the same facts as card.md

What a reader needs to trust and reuse the model: the architecture and its size, how the search
scored it (validation accuracy, the search's epochs) beside how it scored on the test split after
retraining (with and without flip test-time augmentation), the retraining recipe and seed, the
data sizes and which test split, the study and trial it came from, library versions, time.
"""

from __future__ import annotations

from typing import Any

from nanonas.study.recipe import versions

__all__ = ["library_versions", "markdown"]


def library_versions() -> dict[str, str]:
    """The versions a study records, and the ONNX exporter's."""
    return versions("onnx", "onnxscript")


def markdown(card: dict[str, Any]) -> str:
    """card.md: a title, the scores, and every other fact of the card as a table."""
    data = card["data"]
    rows = [
        ("architecture", f"`{card['architecture']}`"),
        ("parameters", f"{card['params']:,}"),
        ("FLOPs per image", f"{card['flops']:,}"),
        (
            "search validation accuracy",
            f"{card['search_val_acc']:.4f} ({card['search_epochs']} epochs, "
            f"{_count(data['search_train'])} train / {_count(data['search_val'])} validation "
            "images)",
        ),
        ("test accuracy", f"{card['test_acc']:.4f}"),
        ("test accuracy, flip TTA", f"{card['test_acc_flip']:.4f}"),
        (
            "retraining",
            f"{card['epochs']} epochs on {data['train']:,} images (train + validation), "
            f"seed {card['seed']}, {card['train_seconds']:.1f} s on {card['device']}",
        ),
        ("test split", f"{data['test']:,} images: {data['test_split']}"),
        ("dataset", f"{data['dataset']}, {data['classes']} classes, {data['image_size']} px"),
        (
            "input",
            "normalized float (N, C, H, W): (x / 255 - mean) / std, "
            f"mean {_floats(card['mean'])}, std {_floats(card['std'])}",
        ),
        ("study", f"{card['study']} in {card['storage']}, trial {card['trial']}"),
        ("recipe", ", ".join(f"{k} {v}" for k, v in card["recipe"].items())),
        ("versions", ", ".join(f"{k} {v}" for k, v in card["versions"].items())),
        ("exported", card["exported"]),
        ("files", ", ".join(card["files"])),
    ]
    lines = [
        f"# {card['study']}, trial {card['trial']}",
        "",
        f"Test accuracy **{card['test_acc']:.2%}** ({card['test_acc_flip']:.2%} with horizontal-"
        f"flip test-time augmentation), measured once after retraining; the search's validation "
        f"accuracy was {card['search_val_acc']:.2%}.",
        "",
        '    model = nanonas.load_model("<this folder>")   # or torch.export.load("model.pt2")',
        "    model.predict(images)                          # uint8 images -> class indices",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "Classes, in output order: " + ", ".join(card["classes"]),
        "",
    ]
    return "\n".join(lines)


def _floats(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"
