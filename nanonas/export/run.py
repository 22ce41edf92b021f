"""Retrain a study's trial from scratch, test it once, and export it: what `python -m
nanonas.export` and `nano_nas()` both run.

    folder = export(storage="sqlite:///nanonas.db", trial=12, epochs=30)
    model = nanonas.load_model(folder)

The order keeps every refusal before any work and any write: the output folder is checked, the
study and trial picked (nanonas.export.pick), the study's recipe read, the test split loaded (a
dataset without one is refused here, before training), then the architecture is trained from
scratch on the whole training set (train + validation, normalized with its own statistics) with
the study's recipe for `epochs`, and scored once on the test split, with and without
horizontal-flip test-time augmentation. The files are written into a hidden folder beside the
target and renamed into place, so a failure or a Ctrl-C leaves nothing; the study then records
the export (nanonas.records.add_export). Trial values are never changed.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from nanonas import data, records
from nanonas.data import DeviceLoader
from nanonas.errors import ConfigError
from nanonas.export import save
from nanonas.export.card import library_versions
from nanonas.export.load import FORMAT
from nanonas.export.pick import open_study, pick_trial
from nanonas.model import count_flops, count_params
from nanonas.storage import mask
from nanonas.train import TrainConfig, evaluate, resolve_device, train

__all__ = ["DEFAULT_EPOCHS", "check_folder", "default_folder", "export", "free_folder"]

DEFAULT_EPOCHS = 30  # the original nanoNAS trained its final networks for 30 epochs
_TEST_SPLITS = {
    "cifar10": "the official CIFAR-10 test set",
    "cifar100": "the official CIFAR-100 test set",
    "imagefolder": "the test/ (or val/) folder beside train/",
    "synthetic": "the synthetic dataset's own test split",
}
# The training recipe's fields that a study's recipe stores (nanonas.study.recipe).
_RECIPE = (
    "batch_size",
    "lr",
    "warmup_epochs",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "augment",
    "cutout",
)


def default_folder(study_name: str, trial: int) -> Path:
    return Path(f"export-{study_name}-trial-{trial}")


def free_folder(folder: Path) -> Path:
    """`folder`, or the first of folder-2, folder-3, ... that does not exist yet."""
    candidate, n = folder, 1
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def export(
    *,
    storage: str = "sqlite:///nanonas.db",
    study_name: str | None = None,
    trial: int | None = None,
    max_params: int | None = None,
    max_flops: int | None = None,
    out: str | Path | None = None,
    epochs: int = DEFAULT_EPOCHS,
    force: bool = False,
    device: str = "auto",
    data_dir: str | Path | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> Path:
    """Retrain, test and export one trial (see the module docstring); return the folder.
    `out` defaults to ./export-<study>-trial-<N>; `data_dir` to the study's; `seed` to the
    trial's. Raises ConfigError or DataError, one line, before anything is written."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    resolve_device(device)  # an unusable device is refused before anything
    if out is not None:
        check_folder(Path(out), force=force)  # before opening anything
    study = open_study(storage, study_name)
    chosen = pick_trial(study, number=trial, max_params=max_params, max_flops=max_flops)
    folder = Path(out) if out is not None else default_folder(study.study_name, chosen.number)
    check_folder(folder, force=force)

    attrs = study.user_attrs
    recipe = records.recipe(attrs)
    if recipe is None or "dataset" not in recipe:
        raise ConfigError(
            f"study {study.study_name!r} has no nanonas recipe (made by plain Optuna or an old "
            "nanonas); its training cannot be repeated"
        )
    made_by = records.study_config(attrs) or {}
    data_dir = Path(data_dir if data_dir is not None else made_by.get("data_dir", "data"))
    test_set = data.load(recipe["dataset"], data_dir=data_dir, train=False)  # refused: no split
    full = data.load(recipe["dataset"], data_dir=data_dir)
    if recipe.get("images") not in (None, len(full)):
        raise ConfigError(
            f"{recipe['dataset']} in {data_dir} has {len(full):,} training images, the study's "
            f"had {recipe['images']:,}; pass the --data-dir the study searched on"
        )
    test_set = test_set.normalized_as(full)  # as the network's training images are
    trial_seed = records.read(chosen).seed
    seed = seed if seed is not None else trial_seed if trial_seed is not None else chosen.number
    config = TrainConfig(
        epochs=epochs, device=device, seed=seed, **{k: recipe[k] for k in _RECIPE if k in recipe}
    )
    onnx = save.can_onnx()
    if not onnx:
        save.warn_no_onnx()

    arch = records.architecture(chosen)
    bar = tqdm(
        total=epochs, desc=f"retraining trial {chosen.number}", unit="epoch", disable=not progress
    )
    try:
        history = train(
            arch, config, train_set=full, val_set=None, on_epoch=lambda epoch, _: bar.update()
        )
    finally:
        bar.close()
    loader = DeviceLoader(test_set, batch_size=1024, device=history.device)
    # In fp32, as the exported files compute: the score is the shipped model's.
    test_acc = evaluate(history.model, loader, precision="fp32")
    test_acc_flip = evaluate(history.model, loader, precision="fp32", flip=True)

    # Trained channels_last maybe; saved in the plain layout every runtime reads.
    net = history.model.float().cpu().to(memory_format=torch.contiguous_format).eval()
    now = datetime.datetime.now(datetime.timezone.utc)
    when = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    shown = {k: v for k, v in dataclasses.asdict(config).items() if k in (*_RECIPE, "epochs")}
    search = records.study_data(attrs)
    card: dict[str, Any] = {
        "study": study.study_name,
        "storage": mask(storage),
        "trial": chosen.number,
        "architecture": str(arch),
        "params": count_params(net),
        "flops": count_flops(
            arch,
            image_size=full.image_size,
            in_channels=int(full.images.shape[1]),
            num_classes=full.num_classes,
        ),
        "search_val_acc": chosen.values[0],
        "search_epochs": recipe.get("epochs"),
        "test_acc": test_acc,
        "test_acc_flip": test_acc_flip,
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(history.seconds, 1),
        "device": history.device,
        "data": {
            "dataset": recipe["dataset"],
            "train": len(full),
            "test": len(test_set),
            "search_train": search.get("train"),
            "search_val": search.get("val"),
            "classes": full.num_classes,
            "image_size": full.image_size,
            "test_split": _TEST_SPLITS.get(recipe["dataset"], "its test split"),
        },
        "classes": list(full.classes),
        "mean": list(full.mean),
        "std": list(full.std),
        "recipe": shown,
        "versions": library_versions(),
        "exported": when,
        "files": [
            "model.pt",
            "model.pt2",
            *(["model.onnx"] if onnx else []),
            "card.md",
            "card.json",
        ],
    }
    saved = {
        "format": FORMAT,
        "state_dict": net.state_dict(),
        "arch": str(arch),
        "classes": list(full.classes),
        "mean": list(full.mean),
        "std": list(full.std),
        "in_channels": int(full.images.shape[1]),
        "recipe": shown,
        "card": card,
    }
    example = (full.images[:2].float() / 255 - 0.5) / 0.25
    _write_atomically(
        folder,
        force=force,
        fill=lambda tmp: save.write(tmp, net=net, saved=saved, card=card, example=example),
    )
    records.add_export(
        study,
        when=when,
        trial=chosen.number,
        test_acc=test_acc,
        test_acc_flip=test_acc_flip,
        epochs=epochs,
        folder=str(folder.resolve()),
    )
    return folder


def check_folder(folder: Path, *, force: bool) -> None:
    """Refuse an existing folder (unless `force`) and a folder that cannot be written, without
    writing anything that stays."""
    if folder.exists() and not force:
        raise ConfigError(f"output folder {folder} exists; pass --force to replace it")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {folder} exists and is not a folder")
    parent = folder.absolute().parent
    while not parent.exists():  # it is created, later, where the nearest existing one allows
        parent = parent.parent
    try:  # os.access says yes to root on a read-only mount: really try
        probe = tempfile.mkdtemp(prefix=".nanonas-probe-", dir=parent)
    except OSError as e:
        raise ConfigError(
            f"output folder {folder}: cannot write in {parent} ({e.strerror})"
        ) from None
    os.rmdir(probe)


def _write_atomically(folder: Path, *, force: bool, fill: Any) -> None:
    """Fill a hidden folder beside `folder`, then rename it into place: all or nothing."""
    folder = folder.absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        fill(tmp)
        umask = os.umask(0)  # mkdtemp made it private; the folder gets the usual permissions
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        if folder.exists() and force:
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            folder.rename(old / "replaced")
            try:
                tmp.rename(folder)
            except BaseException:
                (old / "replaced").rename(folder)  # the replaced export comes back
                old.rmdir()
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
