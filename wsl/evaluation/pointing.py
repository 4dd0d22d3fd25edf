"""The pointing game: does a class heatmap's maximum fall on an object of that class?

For every (image, class) pair where the image holds a GT box of the class (difficult or
not, as CorLoc), the caller gives one point, ``(x, y)``: the location of the class map's
maximum, mapped to pixel coordinates of the image as stored on disk. It is a hit when it
lies within ``tolerance`` pixels (Euclidean distance to the nearest pixel of the box,
``<=``) of any GT box of the class, difficult ones included: each box grows by a disc of
radius ``tolerance``. The default, 18 pixels, is Oquab et al.'s (CVPR 2015) tolerance.
Per-class accuracy is the fraction of hits; the mean is over classes with at least one pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsl.evaluation.per_image import (
    PerImageEvaluator,
    check_classes,
    defined_mean,
    fraction_per_class,
)
from wsl.structures.detections import ArrayLike, ImageGroundTruth, to_numpy

OQUAB_TOLERANCE = 18.0  # pixels at the original image scale


def pointing_hits(
    points: Tensor, gt_boxes: Sequence[Tensor], tolerance: float = OQUAB_TOLERANCE
) -> Tensor:
    """Hits (``(M,)`` bool) of points ``(M, 2)`` ``(x, y)``; ``gt_boxes[m]`` ``(K_m, 4)`` are
    the 0-based inclusive GT boxes of point m's class in its image (none: a miss)."""
    if len(points) != len(gt_boxes):
        raise ValueError(f"{len(points)} points for {len(gt_boxes)} sets of GT boxes")
    counts = torch.tensor([len(b) for b in gt_boxes], dtype=torch.long)
    pair = torch.repeat_interleave(torch.arange(len(points)), counts)
    boxes = torch.cat([b.reshape(-1, 4).double() for b in gt_boxes] + [torch.empty(0, 4).double()])
    xy = points.double()[pair]
    dx = (boxes[:, 0] - xy[:, 0]).clamp(min=0) + (xy[:, 0] - boxes[:, 2]).clamp(min=0)
    dy = (boxes[:, 1] - xy[:, 1]).clamp(min=0) + (xy[:, 1] - boxes[:, 3]).clamp(min=0)
    near = (dx**2 + dy**2 <= tolerance**2).double()
    return torch.zeros(len(points), dtype=torch.float64).index_add_(0, pair, near) > 0


def pointing_game(
    points: Sequence[np.ndarray],
    ground_truths: Sequence[ImageGroundTruth],
    num_classes: int,
    tolerance: float = OQUAB_TOLERANCE,
) -> tuple[float, np.ndarray]:
    """Mean and per-class (``(C,)``, NaN without a pair) accuracy; ``points[i]`` is ``(C, 2)``,
    the ``(x, y)`` maximum of each class map of image i in its original pixels."""
    if len(points) != len(ground_truths):
        raise ValueError(f"{len(points)} images of points, {len(ground_truths)} of GT")
    pair_points, pair_classes, pair_boxes = [], [], []
    for image_points, gt in zip(points, ground_truths, strict=True):
        check_classes(gt.classes, num_classes, "ground-truth")
        for c in np.unique(gt.classes):
            pair_points.append(image_points[c])
            pair_classes.append(c)
            pair_boxes.append(torch.from_numpy(gt.boxes[gt.classes == c]))
    hits = pointing_hits(
        torch.from_numpy(np.array(pair_points, dtype=np.float64).reshape(-1, 2)),
        pair_boxes,
        tolerance,
    ).numpy()
    classes = np.array(pair_classes, dtype=np.int64)
    pairs = np.bincount(classes, minlength=num_classes)
    hit_count = np.bincount(classes, hits, minlength=num_classes)
    per_class = fraction_per_class(hit_count, pairs)
    return defined_mean(per_class), per_class


class PointingGameEvaluator(PerImageEvaluator):
    """Pointing-game accuracy over every processed image of every process (detectron2 style)."""

    def __init__(self, class_names: Sequence[str], tolerance: float = OQUAB_TOLERANCE) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.tolerance = tolerance

    def process(
        self,
        image_ids: Sequence[str],
        points: Sequence[ArrayLike],
        ground_truths: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
    ) -> None:
        """Add images: ``points[i]`` is ``(C, 2)``, the ``(x, y)`` maximum of each class map
        of image i in its original pixels; GT is ``(boxes, classes, difficult)``."""
        if len(points) != len(ground_truths):
            raise ValueError(f"{len(points)} images of points, {len(ground_truths)} of GT")
        records = [
            (to_numpy(p, np.float64, (len(self.class_names), 2)), ImageGroundTruth.of(*g))
            for p, g in zip(points, ground_truths, strict=True)
        ]
        self._keep(image_ids, records)

    def evaluate(self) -> dict[str, Any]:
        """``{"pointing": float, "pointing_per_class": {name: float}}`` (same on every rank)."""
        records = self._gathered()
        mean, per_class = pointing_game(
            [p for p, _ in records], [g for _, g in records], len(self.class_names), self.tolerance
        )
        return {
            "pointing": mean,
            "pointing_per_class": dict(zip(self.class_names, per_class.tolist(), strict=True)),
        }
