"""nanonas.export.load and the portable files: load_model -> predict round trip, and the .pt2
(without nanonas) and ONNX (onnxruntime) outputs equal to the PyTorch model's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nanonas import data
from nanonas.export import ExportedNet, load_model


@pytest.fixture(scope="module")
def test_images():
    return data.load("synthetic", train=False)


def _normalized(model: ExportedNet, images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(model.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.std).view(1, -1, 1, 1)
    return (images.float() / 255 - mean) / std


def test_round_trip_predicts_what_the_card_says(exported, test_images):
    model = exported["model"]
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.classes == test_images.classes and len(model.mean) == 3
    assert str(model.arch) == model.card["architecture"]
    predicted = model.predict(test_images.images)
    assert predicted.dtype == torch.int64 and predicted.shape == (len(test_images),)
    accuracy = (predicted == test_images.labels).float().mean().item()
    assert accuracy == pytest.approx(model.test_acc, abs=1e-6)  # the test the export ran
    assert torch.equal(model(_normalized(model, test_images.images)).argmax(1), predicted)


def test_predict_takes_chw_hwc_batches_arrays_and_pil_images(exported, test_images):
    model = exported["model"]
    chw = test_images.images[:4]
    expected = model.predict(chw)
    hwc = chw.permute(0, 2, 3, 1)
    assert torch.equal(model.predict(hwc), expected)
    assert torch.equal(model.predict(hwc.numpy()), expected)
    assert model.predict(chw[0]) == int(expected[0]) == model.predict(hwc[0])
    pil = [Image.fromarray(img.numpy()) for img in hwc]
    assert torch.equal(model.predict(pil), expected)
    assert model.predict(pil[1]) == int(expected[1])
    assert torch.equal(model.predict(chw.float() / 255), expected)
    with pytest.raises(ValueError, match="16x16 pixels"):
        model.predict(torch.zeros(3, 8, 8, dtype=torch.uint8))


def test_load_model_reads_the_folder_or_its_model_pt(exported):
    again = load_model(exported["folder"] / "model.pt")
    for a, b in zip(
        again.state_dict().values(), exported["model"].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="no exported model"):
        load_model(exported["folder"] / "nothing")


def test_the_pt2_program_loads_without_nanonas_and_matches(exported, test_images, tmp_path):
    model = exported["model"]
    x = _normalized(model, test_images.images[:7])
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import sys, torch\n"
        "sys.modules['nanonas'] = None  # any import of nanonas now fails\n"
        f"program = torch.export.load({str(exported['folder'] / 'model.pt2')!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        f"torch.save(program.module()(x), {str(tmp_path / 'y.pt')!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, atol=1e-5, rtol=1e-5)


def test_the_onnx_file_matches_in_onnxruntime_at_any_batch_size(exported, test_images):
    ort = pytest.importorskip("onnxruntime")
    model = exported["model"]
    session = ort.InferenceSession(str(exported["folder"] / "model.onnx"))
    name = session.get_inputs()[0].name
    for n in (1, 5, 64):
        x = _normalized(model, test_images.images[:n])
        (got,) = session.run(None, {name: x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
