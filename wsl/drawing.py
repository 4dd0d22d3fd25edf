"""Pictures of images with boxes, for inspection, callbacks and reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.io import write_png
from torchvision.utils import draw_bounding_boxes

from wsl.atomic import atomic_path

# Distinct colours, one per class index (cycled for more classes).
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
    "#808000", "#ffd8b1", "#000075", "#a9a9a9",
)  # fmt: skip


def draw_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | str | None = None,
    width: int = 2,
) -> torch.Tensor:
    """Draw inclusive-pixel ``boxes`` (``Nx4``) on a ``uint8`` ``3xHxW`` image; return a copy."""
    if len(boxes) == 0:
        return image.clone()
    return draw_bounding_boxes(
        image, boxes.float(), labels=list(labels) if labels else None, colors=colors,
        width=width, font_size=max(10, image.shape[-1] // 40),
    )  # fmt: skip


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write a ``uint8`` ``3xHxW`` image as PNG, atomically."""
    with atomic_path(path) as tmp:
        write_png(image.cpu(), str(tmp))
    return Path(path)
