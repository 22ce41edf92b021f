"""The architecture picture: a NanoNet drawn as a self-contained SVG, one per trial.

    from nanonas.dashboard.picture import architecture_svg
    svg = architecture_svg(Architecture.parse("w48:conv3x3,skip,zero,zero/conv3x3,zero,zero,zero"))
    Path("arch.svg").write_text(svg)   # any browser shows it; optuna-dashboard shows it inline

Top to bottom, as nanonas.model builds it: the stem, stage 1's blocks at `width` channels, the
stride-2 reduction to twice the width, stage 2's blocks, the classifier. Every block is one
`<g class="block">` element carrying its index and op (`data-block`, `data-op`) and a tooltip;
a block with an op has its residual add (x + op(x)) drawn beside it, a `zero` block is drawn
dashed as the pass-through it is. The parameter counts come from the real modules, built on the
meta device (no weights are allocated), so the picture cannot disagree with the model.

Plain SVG text, no drawing library: the picture is a column of boxes and a few lines, which is
about a hundred lines of string formatting; graphviz would need a system binary on every worker,
and matplotlib or plotly would cost tens of milliseconds per trial and produce a larger file
for less control over the layout.
"""

from __future__ import annotations

from html import escape

import torch
from torch import nn

from nanonas.model import NanoNet
from nanonas.space import OPS, Architecture

__all__ = ["architecture_svg", "block_params"]

_WIDTH = 460  # px of the whole picture
_BOX_X, _BOX_W = 70, 300  # the column of boxes
_BOX_H = 30  # px of one box
_ROW = 50  # px from one block's top to the next one's: the box, then the residual add
_FONT = "font-family='Helvetica, Arial, sans-serif'"

# op kind -> (fill, stroke): one hue per kind, so a glance tells convolutions from pools
_COLOURS = {
    "conv": ("#dbe7f3", "#4e79a7"),
    "sep_conv": ("#dcefd9", "#59a14f"),
    "dil_conv": ("#fde5cc", "#f28e2b"),
    "max_pool": ("#efe0eb", "#b07aa1"),
    "avg_pool": ("#eadfd8", "#9c755f"),
    "skip": ("#eeeeee", "#79706e"),
    "zero": ("#ffffff", "#bab0ac"),
}
_FIXED = ("#f4f4f4", "#555555")  # stem, reduction, classifier


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def block_params(arch: Architecture) -> list[int]:
    """The parameters of each block, stage 1 then stage 2, as nanonas.model builds them (they do
    not depend on the number of classes or input channels)."""
    with torch.device("meta"):
        net = NanoNet(arch)
    return [_params(block) for block in (*net.stage1, *net.stage2)]


def architecture_svg(arch: Architecture, *, num_classes: int = 10, in_channels: int = 3) -> str:
    """A self-contained SVG of the NanoNet `arch` builds for `in_channels`-channel images and
    `num_classes` classes: stem, each block with its op, params and residual add, the stride-2
    reduction, the stage widths, the classifier, and the total parameter count."""
    with torch.device("meta"):  # counts without allocating weights, as the objective does
        net = NanoNet(arch, num_classes=num_classes, in_channels=in_channels)
    w = arch.width
    parts: list[str] = []
    y = 10
    parts.append(_text(_WIDTH // 2, y + 14, str(arch), bold=True, anchor="middle"))
    y += 26
    parts.append(_text(_BOX_X + _BOX_W // 2, y + 10, f"input: {in_channels} channels", "middle"))
    parts.append(_text(_BOX_X + _BOX_W + 8, y + 10, "params", small=True))
    y += 18
    top = y
    y = _fixed(parts, y, "stem", f"conv3x3 + BN, {in_channels} \u2192 {w} ch", _params(net.stem))
    y = _stage(parts, y, 1, w, arch.stage1, net.stage1, first_block=0)
    y = _fixed(
        parts,
        y,
        "reduction",
        f"ReLU, conv3x3 stride 2 + BN, {w} \u2192 {2 * w} ch, half resolution",
        _params(net.reduction),
    )
    y = _stage(parts, y, 2, 2 * w, arch.stage2, net.stage2, first_block=len(arch.stage1))
    y = _fixed(
        parts,
        y,
        "classifier",
        f"ReLU, global avg pool, linear {2 * w} \u2192 {num_classes}",
        _params(net.head),
    )
    total = _params(net)
    # The data path: one line down the column, behind the boxes and in front of the panels.
    cx = _BOX_X + _BOX_W // 2
    spine = f"<line x1='{cx}' y1='{top}' x2='{cx}' y2='{y - 16}' stroke='#555'/>"
    parts.append(
        _text(_WIDTH // 2, y + 14, f"{total:,} parameters in all", bold=True, anchor="middle")
    )
    height = y + 26
    panels = [p for p in parts if p.startswith("<g class='stage'")]
    body = "\n".join([*panels, spine, *(p for p in parts if p not in panels)])
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_WIDTH}' height='{height}' "
        f"viewBox='0 0 {_WIDTH} {height}' role='img'>\n"
        f"<title>{escape(str(arch))}: {total:,} parameters</title>\n"
        f"<rect width='{_WIDTH}' height='{height}' fill='white'/>\n{body}\n</svg>\n"
    )


def _fixed(parts: list[str], y: int, name: str, what: str, params: int) -> int:
    """A box of the fixed part of the network (stem, reduction, classifier); the next y."""
    fill, stroke = _FIXED
    parts.append(
        f"<g class='{name}'><title>{name}: {escape(what)}; {params:,} params</title>"
        f"{_rect(_BOX_X, y, _BOX_W, _BOX_H, fill, stroke)}"
        f"{_text(_BOX_X + 8, y + 13, name, bold=True)}"
        f"{_text(_BOX_X + 8, y + 26, what, small=True)}"
        f"{_text(_BOX_X + _BOX_W + 8, y + 19, f'{params:,}', small=True)}</g>"
    )
    return y + _BOX_H + 16


def _stage(
    parts: list[str],
    y: int,
    number: int,
    channels: int,
    ops: tuple[str, ...],
    modules: nn.Sequential,
    *,
    first_block: int,
) -> int:
    """A stage's panel: its header, then each block with its residual add; the next y."""
    height = 22 + _ROW * len(ops)
    parts.append(
        f"<g class='stage' data-stage='{number}'>"
        f"{_rect(8, y, _WIDTH - 16, height, '#fbfbfd', '#c8c8d8', dash=False)}"
        f"{_text(16, y + 15, f'stage {number}: {channels} channels', bold=True)}</g>"
    )
    y += 22
    for i, (op, block) in enumerate(zip(ops, modules, strict=True)):
        _block(parts, y, first_block + i, op, _params(block))
        y += _ROW
    return y + 10


def _block(parts: list[str], y: int, index: int, op: str, params: int) -> None:
    kind = OPS[op].kind
    fill, stroke = _COLOURS[kind]
    zero = kind == "zero"
    tip = f"block {index}: {op}, {params:,} params" + (
        ", no-op (x passes through)" if zero else ", residual: x + op(x)"
    )
    label = f"{op}  (no-op)" if zero else op
    cx = _BOX_X + _BOX_W // 2
    g = [
        f"<g class='block' id='block-{index}' data-block='{index}' data-op='{op}'>",
        f"<title>{escape(tip)}</title>",
        _rect(_BOX_X, y, _BOX_W, _BOX_H, fill, stroke, dash=zero),
        _text(_BOX_X - 8, y + 19, f"{index}", anchor="end", small=True),
        _text(_BOX_X + 8, y + 19, label, bold=not zero),
        _text(_BOX_X + _BOX_W + 8, y + 19, f"{params:,}", small=True),
    ]
    if not zero:
        # The residual add: the input skips around the op to a (+) under the box.
        add_y = y + _BOX_H + 9
        skip_x = _BOX_X - 26
        g.append(
            f"<polyline class='residual' points='{cx},{y - 3} {skip_x},{y - 3} {skip_x},{add_y} "
            f"{cx - 6},{add_y}' fill='none' stroke='#999' stroke-width='1'/>"
            f"<circle cx='{cx}' cy='{add_y}' r='6' fill='white' stroke='#555'/>"
            f"<path d='M{cx - 4},{add_y} h8 M{cx},{add_y - 4} v8' stroke='#555'/>"
        )
    g.append("</g>")
    parts.append("".join(g))


def _rect(x: int, y: int, w: int, h: int, fill: str, stroke: str, *, dash: bool = False) -> str:
    dashes = " stroke-dasharray='4 3'" if dash else ""
    return (
        f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='4' fill='{fill}' "
        f"stroke='{stroke}'{dashes}/>"
    )


def _text(
    x: int, y: int, text: str, anchor: str = "start", *, bold: bool = False, small: bool = False
) -> str:
    weight = " font-weight='bold'" if bold else ""
    size = " font-size='10'" if small else " font-size='12'"
    return (
        f"<text x='{x}' y='{y}' {_FONT}{size}{weight} text-anchor='{anchor}'>{escape(text)}</text>"
    )
