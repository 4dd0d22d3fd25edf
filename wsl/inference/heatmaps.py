"""Boxes and peaks read off class heatmaps (the Localizer's score maps).

The Localizer (Oquab et al., CVPR 2015) gives one score map per class. Taking the
min/max extent of a thresholded map (as in CMU 16-824) merges two objects of one class
into one box; here every connected component is a candidate box instead:

1. each map is min-max normalized (0: its coolest cell, 1: its hottest) and upsampled to the
   image as stored on disk (bilinear, ``align_corners=False``: the map is taken to cover the
   whole image evenly, so undo any padding or cropping first);
2. for each threshold, each 8-connected component of ``map >= threshold`` is a candidate,
   boxed by its extent in inclusive pixels; components smaller than ``min_area`` are dropped;
3. a box scores the class score times the normalized heat inside the box (see ``score``);
4. per class, NMS with the +1 pixel IoU removes duplicates (nested boxes of one object found
   at several thresholds, when they overlap by more than ``nms_iou``), and the best
   ``max_per_class`` are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import nms

from wsl.structures.detections import Detections

SCORES = ("mean", "mass")
_FLAT = 1e-6  # a map whose range is below this (relative to its magnitude) holds no boxes


@dataclass(frozen=True)
class HeatmapBoxConfig:
    """How boxes are read off class heatmaps (plain fields, so Hydra can build it)."""

    # Levels in (0, 1) of the min-max normalized map (0: its coolest cell, 1: its hottest);
    # each level's connected components are candidates.
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    # Smallest component kept, in pixels of the image on disk as a fraction of the image area,
    # so one value fits every heatmap resolution: 0.001 is about 14x14 pixels on 500x375.
    min_area: float = 0.001
    # Heat score of a box, from the normalized map inside the box (not only the component):
    # "mean": its mean heat; favours tight boxes on the peak and penalises boxes spanning cold
    #   gaps (e.g. two objects merged at a low threshold).
    # "mass": its share of the map's total heat; favours boxes covering the whole activation.
    score: str = "mean"
    nms_iou: float = 0.4  # boxes of one class overlapping more than this are duplicates
    max_per_class: int = 10  # boxes kept per class, best first
    min_class_score: float = 0.0  # with class scores, classes below this are skipped

    def __post_init__(self) -> None:
        # Hydra passes lists; store a tuple so the config stays immutable.
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if not self.thresholds or not all(0 < t < 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be in (0, 1), got {self.thresholds}")
        if not 0 <= self.min_area < 1:
            raise ValueError(f"min_area must be a fraction in [0, 1), got {self.min_area}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if not 0 <= self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in [0, 1], got {self.nms_iou}")
        if self.max_per_class < 1:
            raise ValueError(f"max_per_class must be at least 1, got {self.max_per_class}")


def heatmap_boxes(
    heatmaps: Tensor,
    image_size: tuple[int, int],
    class_scores: Tensor | None = None,
    config: HeatmapBoxConfig | None = None,
    classes: Sequence[int] | None = None,
) -> Detections:
    """Boxes of every object in ``heatmaps`` (C, h, w), in pixels of an image ``(H, W)``.

    ``class_scores`` (C,) are image-level probabilities (apply ``torch.sigmoid`` to logits);
    they scale each class's box scores so boxes rank across images. Without them scores only
    rank boxes within the image. ``classes`` restricts the work to those heatmaps (e.g. the
    classes present, for CorLoc). The heatmaps may be logits or probabilities, on any device;
    the result is on the CPU.
    """
    config = config or HeatmapBoxConfig()
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (C, h, w), got shape {tuple(heatmaps.shape)}")
    selected = list(range(len(heatmaps))) if classes is None else list(classes)
    if class_scores is not None:
        class_scores = class_scores.detach().float().cpu()
        if class_scores.shape != (len(heatmaps),):
            raise ValueError(
                f"class_scores must have shape ({len(heatmaps)},), got {tuple(class_scores.shape)}"
            )
        if (class_scores < 0).any():
            raise ValueError("class_scores must be probabilities in [0, 1]; apply torch.sigmoid")
        selected = [c for c in selected if class_scores[c] >= config.min_class_score]
    maps = heatmaps.detach()[selected].float()
    low, high = maps.amin(dim=(1, 2)), maps.amax(dim=(1, 2))
    magnitude = torch.maximum(low.abs(), high.abs()).clamp_min(1.0)
    varied = high - low > _FLAT * magnitude
    selected = [c for c, keep in zip(selected, varied.tolist(), strict=True) if keep]
    if not selected:
        return _empty()
    low, high = low[varied, None, None], high[varied, None, None]
    maps = (maps[varied] - low) / (high - low)  # bilinear upsampling keeps values in [0, 1]
    size = (int(image_size[0]), int(image_size[1]))
    maps = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    maps = maps.cpu().numpy()
    found = []
    for cls, heat in zip(selected, maps, strict=True):
        boxes, scores = _class_boxes(heat, config)
        if class_scores is not None:
            scores = scores * class_scores[cls]
        found.append((boxes, scores, torch.full_like(scores, cls, dtype=torch.int64)))
    boxes, scores, labels = (torch.cat(parts) for parts in zip(*found, strict=True))
    order = torch.argsort(scores, descending=True, stable=True)
    return Detections(boxes[order], scores[order], labels[order])


def heatmap_peak(heatmap: Tensor, image_size: tuple[int, int]) -> tuple[float, float]:
    """``(x, y)``: the centre of the hottest cell of ``heatmap`` (h, w) in pixels of an image.

    Cell ``(r, c)`` of an ``h x w`` map covering an ``H x W`` image is centred on pixel
    ``((c + 0.5) * W / w - 0.5, (r + 0.5) * H / h - 0.5)`` (the mapping bilinear upsampling
    with ``align_corners=False`` uses). Ties go to the first cell in row-major order.
    """
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be (h, w), got shape {tuple(heatmap.shape)}")
    height, width = heatmap.shape
    row, col = divmod(int(heatmap.argmax()), width)
    return (col + 0.5) * image_size[1] / width - 0.5, (row + 0.5) * image_size[0] / height - 0.5


def _class_boxes(heat: np.ndarray, config: HeatmapBoxConfig) -> tuple[Tensor, Tensor]:
    """The kept boxes of one normalized map, best first, and their heat scores."""
    min_pixels = max(config.min_area * heat.size, 1)
    candidates = [np.zeros((0, 4), dtype=np.int32)]
    for threshold in config.thresholds:
        mask = (heat >= threshold).astype(np.uint8)
        left, top, width, height = cv2.boundingRect(mask)  # label only where the mask is set
        if width == 0:  # OpenCV crashes on an empty image
            continue
        crop = mask[top : top + height, left : left + width]
        stats = cv2.connectedComponentsWithStats(crop, connectivity=8)[2][1:]  # 0: background
        stats = stats[stats[:, cv2.CC_STAT_AREA] >= min_pixels]
        x, y = stats[:, cv2.CC_STAT_LEFT] + left, stats[:, cv2.CC_STAT_TOP] + top
        right = x + stats[:, cv2.CC_STAT_WIDTH]  # exclusive ends
        bottom = y + stats[:, cv2.CC_STAT_HEIGHT]
        candidates.append(np.stack([x, y, right, bottom], axis=1))
    x1, y1, x2, y2 = np.concatenate(candidates).T
    integral = cv2.integral(heat)  # (H + 1, W + 1): sum of heat above and left of each corner
    heat_sums = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    if config.score == "mean":
        heat_scores = heat_sums / ((x2 - x1) * (y2 - y1))
    else:
        heat_scores = heat_sums / integral[-1, -1]
    exclusive = torch.from_numpy(np.stack([x1, y1, x2, y2], axis=1)).float()
    scores = torch.from_numpy(heat_scores).float()
    keep = nms(exclusive, scores, config.nms_iou)[: config.max_per_class]
    inclusive = exclusive[keep] - torch.tensor([0.0, 0.0, 1.0, 1.0])
    return inclusive, scores[keep]


def _empty() -> Detections:
    return Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
