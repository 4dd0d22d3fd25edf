"""CorLoc: how often the top-scoring box of a present class lands on an object of that class.

The pairs counted are the (image, class) pairs where the image holds at least one GT box of
the class, difficult or not: as OICR/PCL's ``dis_eval`` (its denominator counts images with
any box of the class), and as the project's default image labels
(``data.difficult_labels=positive``). The top-scoring detection of the class in the image
(the first one on ties) is correct when its IoU (+1 pixel convention) with any GT box of the
class, difficult ones included, is at least ``iou_threshold`` (``>=``; OICR's ``dis_eval``
uses ``>``). A pair without any detection of its class is a miss. Per-class CorLoc is the
fraction of correct pairs; the mean is over classes with at least one pair (others: NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wsl.evaluation.per_image import (
    DetectionEvaluator,
    check_classes,
    defined_mean,
    fraction_per_class,
)
from wsl.structures.boxes import voc_iou
from wsl.structures.detections import ImageDetections, ImageGroundTruth


def corloc(
    detections: Sequence[ImageDetections],
    ground_truths: Sequence[ImageGroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[float, np.ndarray]:
    """Mean CorLoc and per-class CorLoc (``(C,)`` float64, NaN for classes without a pair)."""
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} images of detections, {len(ground_truths)} of GT")
    pairs = np.zeros(num_classes)
    correct = np.zeros(num_classes)
    for dets, gts in zip(detections, ground_truths, strict=True):
        check_classes(dets.classes, num_classes, "detection")
        check_classes(gts.classes, num_classes, "ground-truth")
        for c in np.unique(gts.classes):
            pairs[c] += 1
            top = dets.top_of_class(c)
            if top is not None:
                iou = voc_iou(dets.boxes[top], gts.boxes[gts.classes == c]).max()
                correct[c] += iou >= iou_threshold
    per_class = fraction_per_class(correct, pairs)
    return defined_mean(per_class), per_class


class CorLocEvaluator(DetectionEvaluator):
    """CorLoc over every processed image of every process (detectron2 style)."""

    def __init__(self, class_names: Sequence[str], iou_threshold: float = 0.5) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.iou_threshold = iou_threshold

    def evaluate(self) -> dict[str, Any]:
        """``{"CorLoc": float, "corloc_per_class": {name: float}}`` (same on every rank)."""
        detections, ground_truths = self.gathered_detections()
        mean, per_class = corloc(
            detections, ground_truths, len(self.class_names), self.iou_threshold
        )
        return {
            "CorLoc": mean,
            "corloc_per_class": dict(zip(self.class_names, per_class.tolist(), strict=True)),
        }
