"""Pictures of images with boxes, for inspection, callbacks and reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import torch
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import draw_bounding_boxes

from wsl.atomic import atomic_path

# A TrueType font that ships with matplotlib, so labels scale with the image.
FONT = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")

# Distinct colours, one per class index (cycled for more classes).
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
    "#808000", "#ffd8b1", "#000075", "#a9a9a9",
)  # fmt: skip


def enlarge(image: torch.Tensor, min_side: int) -> tuple[torch.Tensor, int]:
    """Repeat pixels by a whole factor until the shorter side is at least ``min_side``."""
    factor = max(1, math.ceil(min_side / min(image.shape[-2:])))
    if factor > 1:
        image = image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return image, factor


def draw_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | str | None = None,
    width: int = 2,
    min_side: int = 384,
) -> torch.Tensor:
    """Draw inclusive-pixel ``boxes`` (``Nx4``) on a ``uint8`` ``3xHxW`` image; return a copy.

    Images whose shorter side is below ``min_side`` are enlarged by a whole factor (pixels
    repeated, boxes moved with them) so that small images and their labels stay legible.
    """
    image, factor = enlarge(image, min_side)
    boxes = boxes.float() * factor + boxes.new_tensor([0, 0, factor - 1, factor - 1])
    if len(boxes) == 0:
        return image.clone()
    return draw_bounding_boxes(
        image,
        boxes.float(),
        labels=list(labels) if labels else None,
        colors=colors,
        width=width,
        font=FONT,
        font_size=max(10, min(image.shape[-2:]) // 25),
    )


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
