"""Intersection over union with the VOC devkit's +1 pixel convention.

Boxes are 0-based inclusive ``x1, y1, x2, y2``, so a box is ``x2 - x1 + 1`` pixels wide
(VOCevaldet.m, py-faster-rcnn ``voc_eval.py``). Hand-written because torchvision's
``box_iou`` has no +1 and only gives the full ``N x M`` matrix, while the evaluators need
IoUs of given pairs; this one broadcasts, so it gives both.
"""

from __future__ import annotations

import numpy as np


def voc_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of ``boxes1[..., 4]`` and ``boxes2[..., 4]`` broadcast against each other (float64).

    ``voc_iou(a, b)`` pairs row i of ``a`` with row i of ``b``;
    ``voc_iou(a[:, None], b[None])`` is the ``N x M`` matrix.
    """
    a = np.asarray(boxes1, dtype=np.float64)
    b = np.asarray(boxes2, dtype=np.float64)
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)
