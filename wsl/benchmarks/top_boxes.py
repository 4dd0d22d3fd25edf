"""How much of each object a detector's top box covers: the diagnostic of WSDDN's part domination.

For every (image, class present in it) pair, as CorLoc counts them, take the detector's
top-scoring box of that class and the ground-truth box of that class it overlaps most;
:func:`top_box_area_ratio` is the median over the pairs of the top box's area divided by that
GT box's area. WSDDN's top box on the most discriminative part of an object gives ratios well
below 1 (a head a third of the object's box: about 0.3); a detector that finds whole objects
gives about 1. Difficult objects count, as in CorLoc. Hand-written: no library reports this.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsl.structures.boxes import voc_area, voc_iou
from wsl.structures.detections import ImageDetections, ImageGroundTruth


def top_box_area_ratio(
    detections: Sequence[ImageDetections], ground_truths: Sequence[ImageGroundTruth]
) -> float:
    """Median over (image, present class) pairs of top-box area / matched GT-box area (a pair
    without a detection of its class is left out; NaN when no pair has one). Detections are
    best first per image, so a class's first detection is its top box."""
    ratios = []
    for dets, gt in zip(detections, ground_truths, strict=True):
        for c in np.unique(gt.classes):
            index = dets.top_of_class(c)
            if index is None:
                continue
            top = dets.boxes[index]
            gt_boxes = gt.boxes[gt.classes == c]
            matched = gt_boxes[np.argmax(voc_iou(top[None], gt_boxes))]
            ratios.append(voc_area(top) / voc_area(matched))
    return float(np.median(ratios)) if ratios else float("nan")
