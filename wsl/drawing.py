"""Pictures of images with boxes, for inspection, callbacks and reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image, ImageColor, ImageDraw, ImageFont
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from wsl.runtime.atomic import atomic_path

# A TrueType font that ships with matplotlib, so labels scale with the image.
FONT = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")

# Distinct colours, one per class index (cycled for more classes).
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
    "#808000", "#ffd8b1", "#000075", "#a9a9a9",
)  # fmt: skip
# Ground-truth boxes, drawn beside detections in their class colours.
GT_COLOUR = "#ffffff"


def enlarge(image: torch.Tensor, min_side: int) -> tuple[torch.Tensor, int]:
    """Repeat pixels by a whole factor until the shorter side is at least ``min_side``."""
    factor = max(1, math.ceil(min_side / min(image.shape[-2:])))
    if factor > 1:
        image = image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return image, factor


def _rgb(colour: str) -> tuple[int, int, int]:
    """``(r, g, b)`` of a colour name or ``#rrggbb``."""
    return ImageColor.getrgb(colour)[:3]


def contrast_colour(colour: str) -> str:
    """Black or white, whichever contrasts more with ``colour`` (WCAG relative luminance)."""
    linear = [
        c / 255 / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in _rgb(colour)
    ]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"


def draw_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | str | None = None,
    width: int = 2,
    min_side: int = 384,
) -> torch.Tensor:
    """Draw inclusive-pixel ``boxes`` (``Nx4``) on a ``uint8`` ``3xHxW`` image; return a copy.

    Each box is a band of its colour (``width`` pixels, from the box's edge inwards) between
    two 1-pixel lines of the contrasting colour (black or white, :func:`contrast_colour`), so
    it shows on any background, an object of its own colour included. Each label sits on a
    filled tag of that contrasting colour, written in the box's colour, just above the box
    (else inside its top, below it or inside its bottom: the first place that is inside the
    image and covers no earlier label), moved left to stay inside the image.
    Colours default to :data:`PALETTE` by box index. Images whose shorter side is below
    ``min_side`` are enlarged by a whole factor (pixels repeated, boxes moved with them) so
    that small images and their labels stay legible.
    """
    image, factor = enlarge(image, min_side)
    if len(boxes) == 0:
        return image.clone()
    boxes = boxes.float() * factor + boxes.new_tensor([0, 0, factor - 1, factor - 1]).float()
    if colors is None:
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(boxes))]
    elif isinstance(colors, str):
        colors = [colors] * len(boxes)
    picture = to_pil_image(image.cpu())
    canvas = ImageDraw.Draw(picture)
    font = ImageFont.truetype(FONT, max(10, min(picture.size) // 25))
    for box, colour in zip(boxes.round().int().tolist(), colors, strict=True):
        x1, y1, x2, y2 = box
        edge = contrast_colour(colour)
        canvas.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=edge, width=width + 2)
        canvas.rectangle((x1, y1, x2, y2), outline=colour, width=width)
    placed: list[Tag] = []
    for box, colour, label in zip(boxes.round().int().tolist(), colors, labels or [], strict=False):
        _draw_label(canvas, font, picture.size, box, label, colour, placed)
    return pil_to_tensor(picture)


Tag = tuple[int, int, int, int]  # x1, y1, x2, y2 of a label's tag, inclusive pixels


def _overlaps(a: Tag, b: Tag) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _draw_label(
    canvas: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont,
    size: tuple[int, int],
    box: Sequence[int],
    label: str,
    colour: str,
    placed: list[Tag],
) -> None:
    """Write ``label`` in ``colour`` on a tag of the contrasting colour at the box's left: the
    first of above its top, inside its top, below its bottom, inside its bottom that stays in
    the image and covers no tag in ``placed`` (else the first in the image); add it there."""
    pad = 2
    left, top, right, bottom = canvas.textbbox((0, 0), label, font=font)
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    x = min(max(box[0] - 1, 0), max(size[0] - tag_w, 0))
    rows = [box[1] - 1 - tag_h, box[1], box[3] + 2, box[3] - tag_h + 1]
    inside = [y for y in rows if 0 <= y <= size[1] - tag_h] or [
        max(min(rows[1], size[1] - tag_h), 0)
    ]
    tags = [(x, y, x + tag_w - 1, y + tag_h - 1) for y in inside]
    tag = next((t for t in tags if not any(_overlaps(t, other) for other in placed)), tags[0])
    placed.append(tag)
    canvas.rectangle(tag, fill=contrast_colour(colour))
    canvas.text((tag[0] + pad - left, tag[1] + pad - top), label, fill=colour, font=font)


_PANEL_TITLE_PX, _PANEL_GAP_PX = 30, 12  # title band above each panel, gap between panels


def side_by_side(pictures: Sequence[torch.Tensor], titles: Sequence[str]) -> torch.Tensor:
    """``uint8`` ``3xHxW`` pictures in a row on white, each with its title centred above it
    (top-aligned; the row is as high as the highest); return one ``uint8`` ``3xHxW`` picture."""
    if len(pictures) != len(titles) or not pictures:
        raise ValueError(f"{len(pictures)} pictures and {len(titles)} titles: need one each")
    height = max(p.shape[-2] for p in pictures) + _PANEL_TITLE_PX
    width = sum(p.shape[-1] for p in pictures) + _PANEL_GAP_PX * (len(pictures) - 1)
    row = Image.new("RGB", (width, height), "white")
    canvas = ImageDraw.Draw(row)
    font = ImageFont.truetype(FONT, 16)
    x = 0
    for picture, title in zip(pictures, titles, strict=True):
        row.paste(to_pil_image(picture.cpu()), (x, _PANEL_TITLE_PX))
        centre = (x + picture.shape[-1] / 2, _PANEL_TITLE_PX / 2)
        canvas.text(centre, title, fill="black", font=font, anchor="mm")
        x += picture.shape[-1] + _PANEL_GAP_PX
    return pil_to_tensor(row)


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write a ``uint8`` ``3xHxW`` image as PNG, atomically."""
    with atomic_path(path) as tmp:
        to_pil_image(image.cpu()).save(tmp, format="PNG")
    return Path(path)


def overlay_heatmap(
    image: torch.Tensor,
    heatmap: torch.Tensor,
    alpha: float = 0.5,
    cmap: str = "jet",
    normalize: bool = False,
    min_side: int = 384,
) -> torch.Tensor:
    """Resize a heatmap (``h x w``) to the ``uint8`` ``3xHxW`` image (bilinear), colour-map it
    and blend it over the image; return a ``uint8`` ``3xHxW`` picture.

    Values are read as probabilities in [0, 1] (so a weak map looks weak), or stretched to
    [0, 1] per map with ``normalize=True``. Small images are enlarged as in :func:`draw_boxes`.
    """
    image, _ = enlarge(image, min_side)
    heat = torch.nn.functional.interpolate(
        heatmap[None, None].float(), size=image.shape[-2:], mode="bilinear", align_corners=False
    )[0, 0]
    if normalize:
        low, high = heat.min(), heat.max()
        heat = (heat - low) / (high - low) if high > low else torch.zeros_like(heat)
    heat = heat.clamp(0, 1)
    colours = matplotlib.colormaps[cmap](heat.cpu().numpy())[..., :3]
    colours = torch.from_numpy(colours).permute(2, 0, 1).float() * 255
    blended = (1 - alpha) * image.cpu().float() + alpha * colours
    return blended.round().clamp(0, 255).to(torch.uint8)


# Pixels around the image in a heatmap picture: a title band above, a margin below (for the
# colour bar's lowest tick label), a colour bar and its tick labels to the right.
_TITLE_PX, _BOTTOM_PX, _GAP_PX, _BAR_PX, _TICKS_PX = 28, 8, 12, 16, 44


def heatmap_picture(
    image: torch.Tensor,
    heatmap: torch.Tensor,
    title: str,
    alpha: float = 0.5,
    cmap: str = "jet",
    min_side: int = 384,
) -> torch.Tensor:
    """:func:`overlay_heatmap` (probabilities in [0, 1]) shown pixel for pixel, with ``title``
    above it and a colour bar from 0 to 1 to its right; return a ``uint8`` ``3xHxW`` picture."""
    overlay = overlay_heatmap(image, heatmap, alpha=alpha, cmap=cmap, min_side=min_side)
    height, width = overlay.shape[-2:]
    total_w, total_h = width + _GAP_PX + _BAR_PX + _TICKS_PX, height + _TITLE_PX + _BOTTOM_PX
    figure = Figure(figsize=(total_w / 100, total_h / 100), dpi=100)
    bottom = _BOTTOM_PX / total_h
    axes = figure.add_axes((0, bottom, width / total_w, height / total_h))
    axes.imshow(overlay.permute(1, 2, 0).numpy(), interpolation="nearest", aspect="auto")
    axes.set_axis_off()
    figure.text(0.5 * width / total_w, 1 - 0.5 * _TITLE_PX / total_h, title, ha="center",
                va="center", fontsize=10)  # fmt: skip
    bar_axes = figure.add_axes(
        ((width + _GAP_PX) / total_w, bottom, _BAR_PX / total_w, height / total_h)
    )
    figure.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=bar_axes)
    bar_axes.tick_params(labelsize=8)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)
