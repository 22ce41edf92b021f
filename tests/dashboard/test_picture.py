"""The architecture picture is valid SVG that shows what nanonas.model builds."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch

from nanonas.dashboard.picture import architecture_svg
from nanonas.model import NanoNet, count_params
from nanonas.space import OP_NAMES, Architecture

SVG = "{http://www.w3.org/2000/svg}"
ARCHS = [
    "w48:conv3x3,skip,sep_conv3x3,zero/conv3x3,maxpool3x3,skip,zero",
    "w24:zero,zero,zero,zero/zero,zero,zero,zero",
    "w32:conv5x5,sep_conv5x5,dil_conv3x3,avgpool3x3/maxpool3x3,skip,conv3x3,sep_conv3x3",
]


def _blocks(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "block"]


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.parametrize("text", ARCHS)
def test_picture_is_svg_with_one_labelled_block_per_op(text):
    arch = Architecture.parse(text)
    svg = architecture_svg(arch)
    assert svg.startswith("<svg")
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    assert int(root.get("width")) > 0 and int(root.get("height")) > 0
    assert len(root.get("viewBox").split()) == 4
    blocks = _blocks(root)
    assert [int(g.get("data-block")) for g in blocks] == list(range(len(arch.ops)))
    assert [g.get("data-op") for g in blocks] == list(arch.ops)
    for g, op in zip(blocks, arch.ops, strict=True):
        labels = [t.text for t in g.iter(f"{SVG}text")]
        assert any(label.startswith(op) for label in labels), (op, labels)
        # A block with an op adds its input back; a zero block passes it through, no add.
        residual = [e for e in g.iter() if e.get("class") == "residual"]
        assert len(residual) == (0 if op == "zero" else 1), op


@pytest.mark.parametrize("text", ARCHS)
@pytest.mark.parametrize("shape", [(10, 3), (100, 1)])
def test_params_per_part_add_up_to_the_model(text, shape):
    num_classes, in_channels = shape
    arch = Architecture.parse(text)
    root = ET.fromstring(architecture_svg(arch, num_classes=num_classes, in_channels=in_channels))
    with torch.device("meta"):
        net = NanoNet(arch, num_classes=num_classes, in_channels=in_channels)
    parts = [
        g
        for g in root.iter(f"{SVG}g")
        if g.get("class") in ("block", "stem", "reduction", "classifier")
    ]
    assert len(parts) == len(arch.ops) + 3
    shown = [_number([t.text for t in g.iter(f"{SVG}text")][-1]) for g in parts]
    assert sum(shown) == count_params(net)
    modules = [*net.stage1, *net.stage2]
    for g in _blocks(root):
        count = _number([t.text for t in g.iter(f"{SVG}text")][-1])
        block = modules[int(g.get("data-block"))]
        assert count == sum(p.numel() for p in block.parameters())
        assert (count == 0) == (g.get("data-op") in ("zero", "skip", "maxpool3x3", "avgpool3x3"))
    assert f"{count_params(net):,} parameters" in "".join(root.itertext())


def test_reduction_and_stage_widths_are_shown():
    arch = Architecture.parse(ARCHS[0])
    root = ET.fromstring(architecture_svg(arch))
    text = " ".join(root.itertext())
    assert "stride 2" in text and "48 \u2192 96 ch" in text
    assert "stage 1: 48 channels" in text and "stage 2: 96 channels" in text
    assert [g.get("data-stage") for g in root.iter(f"{SVG}g") if g.get("class") == "stage"] == [
        "1",
        "2",
    ]


def test_every_op_can_be_drawn():
    for op in OP_NAMES:
        arch = Architecture.from_ops([op] * 8, 24)
        assert {g.get("data-op") for g in _blocks(ET.fromstring(architecture_svg(arch)))} == {op}
