"""Image + box transforms (torchvision ``transforms.v2``).

torchvision's geometric transforms treat ``XYXY`` boxes as continuous coordinates with an
exclusive end, so the dataset converts wsl's inclusive boxes before a transform and back after
it (:mod:`wsl.structures.boxes`, the home of the box conventions).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_CHOICES = ("square", "shortest_side", "longest_side")


def build_transform(
    resize: str = "shortest_side",
    scales: Sequence[int] = (600,),
    max_size: int | None = 1000,
    flip: bool = False,
) -> v2.Compose:
    """The transform applied to every sample (image, proposals and GT boxes together).

    Args:
        resize: ``square`` resizes to ``s x s`` (Localizer); ``shortest_side`` scales the
            shorter side to ``s`` with the longer side at most ``max_size`` (WSDDN; OICR's Caffe
            training, ``lib/utils/blob.py`` lines 38-43); ``longest_side`` scales the longer
            side to ``s``, the shorter rounded down (OICR's Caffe test,
            ``lib/fast_rcnn/test.py`` lines 38-45; pcl.pytorch 0.4.0 training and test,
            ``lib/utils/blob.py`` lines 129-136, its ``MAX_SIZE`` cap commented out).
        scales: one ``s`` is drawn at random per sample (multi-scale jitter when several).
        max_size: cap on the longer side for ``shortest_side`` (``longest_side`` needs null).
        flip: random horizontal flip with probability 0.5 (boxes move with the image).
    """
    if resize not in RESIZE_CHOICES:
        raise ValueError(f"resize={resize!r} is not valid; choose one of {RESIZE_CHOICES}")
    scales = list(scales)
    if resize == "square":
        resize_step = v2.RandomChoice([v2.Resize((s, s), antialias=True) for s in scales])
    elif resize == "longest_side":
        if max_size is not None:
            raise ValueError(
                f"resize=longest_side sets the longer side to the scale; max_size={max_size} "
                "caps it for shortest_side only: set max_size to null"
            )
        resize_step = v2.RandomChoice(
            [v2.Resize(size=None, max_size=s, antialias=True) for s in scales]
        )
    else:
        resize_step = v2.RandomShortestSize(scales, max_size=max_size, antialias=True)
    steps: list[v2.Transform] = [v2.RandomHorizontalFlip(0.5)] if flip else []
    steps += [
        resize_step,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    return v2.Compose(steps)
