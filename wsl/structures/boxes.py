"""Box geometry: the one home of the box conventions (``shared/DESIGN.md``).

Inside wsl, boxes are 0-based *inclusive* pixels ``x1, y1, x2, y2``, so a box is
``x2 - x1 + 1`` pixels wide (VOCevaldet.m, py-faster-rcnn ``voc_eval.py``). torchvision's
geometric transforms and ops treat ``XYXY`` boxes as continuous coordinates with an exclusive
end: :func:`inclusive_to_continuous` before them, :func:`continuous_to_inclusive` after. A flip
then maps pixel column ``x`` to ``W - 1 - x`` (:func:`hflip_boxes`) and a resize by ``s`` maps
the pixel span ``[a, b]`` to ``[s*a, s*(b+1) - 1]`` (:func:`boxes_to_original`). IoU follows
the VOC devkit's +1 pixel convention (:func:`voc_iou`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

Size = tuple[int, int]  # (height, width)


def inclusive_to_continuous(boxes: Tensor) -> Tensor:
    """Inclusive pixel boxes ``[x1, y1, x2, y2]`` -> continuous boxes with exclusive end."""
    return boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def continuous_to_inclusive(boxes: Tensor) -> Tensor:
    """Continuous boxes with exclusive end -> inclusive pixel boxes."""
    return boxes - boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def boxes_to_original(boxes: Tensor, input_size: Size, original_size: Size) -> Tensor:
    """Map inclusive boxes on the resized network input back to the image on disk.

    Sizes are ``(height, width)``. Undoes the resize only (evaluation never flips).
    """
    scale_y = original_size[0] / input_size[0]
    scale_x = original_size[1] / input_size[1]
    scale = boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
    return continuous_to_inclusive(inclusive_to_continuous(boxes) * scale)


def unique_at_scale(boxes: Tensor, scale: float) -> Tensor:
    """Indices (ascending) of the first of each group of ``boxes`` (K, 4) whose coordinates
    times ``scale`` round to the same integers: the boxes left after the Fast R-CNN-style
    deduplication of ``DEDUP_BOXES`` (ppengtang/oicr ``lib/roi_data_layer/minibatch.py`` lines
    41-46, pcl.pytorch 0.4.0 ``lib/roi_data/minibatch.py`` lines 42-47: ``np.round(rois *
    1/8)`` hashed, one box per hash). Rounding is half to even, as ``np.round``."""
    rounded = torch.round(boxes * scale).cpu().numpy().reshape(-1, 4)
    _, first = np.unique(rounded, axis=0, return_index=True)  # first of each, as the filter's
    return torch.from_numpy(np.sort(first)).to(boxes.device)


def hflip_boxes(boxes: Tensor, width: int) -> Tensor:
    """Inclusive boxes (K, 4) of an image ``width`` pixels wide, after a horizontal flip."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack([width - 1 - x2, y1, width - 1 - x1, y2], dim=1)


def coco_bbox(boxes: np.ndarray) -> np.ndarray:
    """0-based inclusive ``x1, y1, x2, y2`` boxes ``(K, 4)`` -> COCO ``[x, y, w, h]``
    (``w = x2 - x1 + 1``: COCO's boxes are continuous, so the pixel grid's +1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2] + 1], axis=1)


def inclusive_boxes(bboxes: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes ``(K, 4)`` -> 0-based inclusive ``x1, y1, x2, y2``."""
    bboxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([bboxes[:, :2], bboxes[:, :2] + bboxes[:, 2:] - 1], axis=1)


def voc_area(boxes: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """Areas of inclusive ``boxes[..., 4]`` with the +1 pixel convention (arrays or tensors)."""
    return (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)


def voc_iou(boxes1: np.ndarray | Tensor, boxes2: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """IoU (+1 pixel convention) of inclusive ``boxes1[..., 4]`` and ``boxes2[..., 4]``
    broadcast against each other: float64 arrays for arrays, tensors (differentiable, their
    dtype) when either is a tensor.

    ``voc_iou(a, b)`` pairs row i of ``a`` with row i of ``b``;
    ``voc_iou(a[:, None], b[None])`` is the ``N x M`` matrix. Hand-written because
    torchvision's ``box_iou`` has no +1 and only gives the full matrix.
    """
    if isinstance(boxes1, Tensor) or isinstance(boxes2, Tensor):
        ops, a, b = torch, torch.as_tensor(boxes1), torch.as_tensor(boxes2)
    else:
        ops, a, b = np, np.asarray(boxes1, dtype=np.float64), np.asarray(boxes2, dtype=np.float64)
    iw = ops.clip(
        ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]) + 1, 0, None
    )
    ih = ops.clip(
        ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]) + 1, 0, None
    )
    inter = iw * ih
    return inter / (voc_area(a) + voc_area(b) - inter)


def upright_boxes(boxes: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Inclusive ``x1, y1, x2, y2`` boxes of a stored ``width`` x ``height`` image, moved onto
    the image turned upright by EXIF ``orientation`` as :func:`PIL.ImageOps.exif_transpose` turns
    it (EXIF 2.32 tag 0x0112: 2 mirrored left-right, 3 rotated 180°, 4 mirrored top-bottom,
    5 transposed, 6 rotated 90° clockwise, 7 transversed, 8 rotated 90° counter-clockwise)."""
    x1, y1, x2, y2 = boxes.T
    w, h = width - 1, height - 1
    turned = {
        1: (x1, y1, x2, y2),
        2: (w - x2, y1, w - x1, y2),
        3: (w - x2, h - y2, w - x1, h - y1),
        4: (x1, h - y2, x2, h - y1),
        5: (y1, x1, y2, x2),
        6: (h - y2, x1, h - y1, x2),
        7: (h - y2, w - x2, h - y1, w - x1),
        8: (y1, w - x2, y2, w - x1),
    }[orientation]
    return np.stack(turned, axis=1).astype(boxes.dtype)
