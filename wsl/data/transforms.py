"""Image + box transforms (torchvision ``transforms.v2``) and the box-convention edges.

Inside wsl, boxes are 0-based *inclusive* pixels (``shared/DESIGN.md``). torchvision's
geometric transforms treat ``XYXY`` boxes as continuous coordinates with an exclusive end,
so the dataset converts with :func:`inclusive_to_continuous` before a transform and
:func:`continuous_to_inclusive` after it. A flip then maps pixel column ``x`` to
``W - 1 - x`` and a resize by ``s`` maps the pixel span ``[a, b]`` to ``[s*a, s*(b+1) - 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_CHOICES = ("square", "shortest_side")


def inclusive_to_continuous(boxes: torch.Tensor) -> torch.Tensor:
    """Inclusive pixel boxes ``[x1, y1, x2, y2]`` -> continuous boxes with exclusive end."""
    return boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def continuous_to_inclusive(boxes: torch.Tensor) -> torch.Tensor:
    """Continuous boxes with exclusive end -> inclusive pixel boxes."""
    return boxes - boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def boxes_to_original(
    boxes: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """Map inclusive boxes on the resized network input back to the image on disk.

    Sizes are ``(height, width)``. Undoes the resize only (evaluation never flips).
    """
    scale_y = original_size[0] / input_size[0]
    scale_x = original_size[1] / input_size[1]
    scale = boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
    return continuous_to_inclusive(inclusive_to_continuous(boxes) * scale)


def build_transform(
    resize: str = "shortest_side",
    scales: Sequence[int] = (600,),
    max_size: int | None = 1000,
    flip: bool = False,
) -> v2.Compose:
    """The transform applied to every sample (image, proposals and GT boxes together).

    Args:
        resize: ``square`` resizes to ``s x s`` (Localizer); ``shortest_side`` scales the
            shorter side to ``s`` with the longer side at most ``max_size`` (WSDDN).
        scales: one ``s`` is drawn at random per sample (multi-scale jitter when several).
        max_size: cap on the longer side for ``shortest_side``.
        flip: random horizontal flip with probability 0.5 (boxes move with the image).
    """
    if resize not in RESIZE_CHOICES:
        raise ValueError(f"resize={resize!r} is not valid; choose one of {RESIZE_CHOICES}")
    scales = list(scales)
    if resize == "square":
        resize_step = v2.RandomChoice([v2.Resize((s, s), antialias=True) for s in scales])
    else:
        resize_step = v2.RandomShortestSize(scales, max_size=max_size, antialias=True)
    steps: list[v2.Transform] = [v2.RandomHorizontalFlip(0.5)] if flip else []
    steps += [
        resize_step,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    return v2.Compose(steps)
