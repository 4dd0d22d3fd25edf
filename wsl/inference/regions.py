"""Region inference: test-time views of a batch, and region scores turned into detections.

**Post-processing** (:func:`region_detections`), as the WSDDN paper ranks regions: every
(region, class) pair is a candidate box scored by the region's score for the class; per class
independently, candidates scoring ``<= score_threshold`` are dropped, then non-maximum
suppression drops a box whose IoU with a higher-scoring box of its class is ``> nms_iou`` (0.4
in the paper), then the ``top_k`` best of the image (all classes together) are kept.
``wsddn_test.m`` (the released code) keeps a score ``> 1e-3`` where the score is the region's
score *summed* over its 10 test views (5 scales x 2 flips), NMS 0.4, and no cap per image:
``score_threshold_on="sum"`` compares the threshold with that sum (the average times the number
of views), ``top_k=None`` keeps every box.
torchvision's ``batched_nms`` computes IoU on continuous boxes, so the inclusive boxes are
passed as ``x1, y1, x2 + 1, y2 + 1``: the VOC devkit's +1 pixel convention.

**Test-time augmentation** (:class:`TTAConfig`): the paper averages the region
scores over 5 scales and their horizontal flips. The batch holds each image once, already
resized (and normalized) by the data's eval transform, zero-padded at the bottom and right.
A view of scale ``s`` re-resizes each image's unpadded part with ``F.interpolate`` (bilinear,
antialiased, as ``transforms.v2.Resize``) to the size the data's ``shortest_side`` resize
would give the image on disk (shorter side ``s``, longer side at most ``max_size``), or, with
``resize="longest_side"``, its ``longest_side`` resize (longer side ``s``: OICR's Caffe test
``lib/fast_rcnn/test.py`` lines 38-45, pcl.pytorch ``lib/utils/blob.py`` lines 129-136); resizing
commutes with the per-channel normalization, so this equals resizing before normalizing up to
uint8 rounding, but detail lost to a smaller eval scale is not recovered: make the eval scale
the largest TTA scale. A flipped view is ``torch.flip`` of the image along its width and maps
every box column ``x`` to ``W - 1 - x`` (``W``: the view's width), so ``x1, x2`` become
``W - 1 - x2, W - 1 - x1``. Each view scores the *same* proposals (rescaled and flipped with the
image), so region scores are averaged per proposal, and the detections are those proposals in
the pixels of the image on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from wsl.structures.boxes import Size, boxes_to_original, hflip_boxes, inclusive_to_continuous
from wsl.structures.detections import Detections

SCORE_THRESHOLD_ON = ("mean", "sum")  # what the score threshold compares, over the test views


@dataclass(frozen=True)
class DetectionConfig:
    """How region scores become detections (see the module docstring).

    ``score_threshold``: a (region, class) score must be above it (0 keeps every positive
    score: WSDDN scores are products of two softmaxes, often far below 1e-3).
    ``score_threshold_on``: ``"mean"`` compares it with the score averaged over the test views,
    ``"sum"`` with the score summed over them (``wsddn_test.m``).
    ``nms_iou``: per-class NMS suppresses IoU above this. ``top_k``: detections kept per image
    (``None``: all).
    """

    score_threshold: float = 0.0
    nms_iou: float = 0.4
    top_k: int | None = 100
    score_threshold_on: str = "mean"

    def __post_init__(self) -> None:
        if self.score_threshold_on not in SCORE_THRESHOLD_ON:
            raise ValueError(
                f"model.net.inference.score_threshold_on={self.score_threshold_on!r} is not valid; "
                f"choose one of {SCORE_THRESHOLD_ON}"
            )


def region_detections(
    boxes: Tensor, region_scores: Tensor, config: DetectionConfig, num_views: int = 1
) -> Detections:
    """Detections of one image from its regions' ``boxes`` (K, 4), or per class (K, C, 4) where
    a head regresses them, and ``region_scores`` (K, C), the scores averaged over ``num_views``
    test views: best first, boxes taken from ``boxes`` (inclusive pixels, whatever image they
    refer to)."""
    num_classes = region_scores.shape[1]
    flat = region_scores.flatten()  # index = region * C + class
    compared = flat * num_views if config.score_threshold_on == "sum" else flat
    candidates = (compared > config.score_threshold).nonzero().squeeze(1)
    regions, classes = candidates // num_classes, candidates % num_classes
    scores = flat[candidates]
    candidate_boxes = boxes[regions, classes] if boxes.ndim == 3 else boxes[regions]
    keep = batched_nms(inclusive_to_continuous(candidate_boxes), scores, classes, config.nms_iou)
    keep = keep[: config.top_k]  # batched_nms sorts by decreasing score
    return Detections(candidate_boxes[keep], scores[keep], classes[keep])


def shortest_side_size(size: Size, scale: int, max_size: int | None = None) -> Size:
    """``(height, width)`` of an image of ``size`` resized to shorter side ``scale``, longer
    side at most ``max_size``, rounded down as ``transforms.v2.RandomShortestSize`` does."""
    height, width = size
    ratio = scale / min(height, width)
    if max_size is not None:
        ratio = min(ratio, max_size / max(height, width))
    return int(height * ratio), int(width * ratio)


def longest_side_size(size: Size, scale: int) -> Size:
    """``(height, width)`` of an image of ``size`` resized to longer side ``scale``, the
    shorter rounded down, as ``transforms.v2.Resize(size=None, max_size=scale)`` does."""
    height, width = size
    short = int(scale * min(height, width) / max(height, width))
    return (scale, short) if height >= width else (short, scale)


TTA_RESIZE_CHOICES = ("shortest_side", "longest_side")


@dataclass(frozen=True)
class TTAConfig:
    """The views whose region scores are averaged at test time (see the module docstring).

    ``scales``: shorter sides of the views (empty: the batch's own size only), or their longer
    sides with ``resize="longest_side"``; ``max_size``: cap on their longer side
    (``shortest_side`` only); ``flip``: add the horizontal flip of every view.
    """

    scales: Sequence[int] = ()
    max_size: int | None = None
    flip: bool = False
    resize: str = "shortest_side"

    def __post_init__(self) -> None:
        if self.resize not in TTA_RESIZE_CHOICES:
            raise ValueError(
                f"model.net.tta.resize={self.resize!r} is not valid; choose one of "
                f"{TTA_RESIZE_CHOICES}"
            )
        if self.resize == "longest_side" and self.max_size is not None:
            raise ValueError(
                f"model.net.tta.resize=longest_side sets the longer side to each scale; "
                f"model.net.tta.max_size={self.max_size} caps it for shortest_side only: set it "
                "to null"
            )

    def views(self) -> list[tuple[int | None, bool]]:
        """``(scale, flipped)`` of every view; scale ``None`` is the batch's own size."""
        scales: list[int | None] = list(self.scales) or [None]
        return [(s, f) for s in scales for f in ((False, True) if self.flip else (False,))]


def view_of_batch(
    images: Tensor,
    proposals: Sequence[Tensor],
    input_sizes: Sequence[Size],
    original_sizes: Sequence[Size],
    scale: int | None,
    flipped: bool,
    max_size: int | None = None,
    resize: str = "shortest_side",
) -> tuple[Tensor, list[Tensor], list[Size]]:
    """A padded batch's images (N, 3, H, W) and proposals (inclusive, input pixels) in the view
    ``(scale, flipped)``: the new padded images, each image's proposals in them and each
    image's ``(height, width)`` in the view. ``scale`` is the view's shorter side, or its longer
    side with ``resize="longest_side"``."""
    if scale is None and not flipped:
        return images, list(proposals), [tuple(s) for s in input_sizes]
    views, boxes, sizes = [], [], []
    for image, props, input_size, original_size in zip(
        images, proposals, input_sizes, original_sizes, strict=True
    ):
        if scale is None:
            size = input_size
        elif resize == "longest_side":
            size = longest_side_size(original_size, scale)
        else:
            size = shortest_side_size(original_size, scale, max_size)
        view = image[:, : input_size[0], : input_size[1]]
        if tuple(size) != tuple(input_size):
            view = F.interpolate(view[None], size=size, mode="bilinear", antialias=True)[0]
        props = boxes_to_original(props, input_size, size)  # input pixels -> view pixels
        if flipped:
            view, props = view.flip(-1), hflip_boxes(props, size[1])
        views.append(view)
        boxes.append(props)
        sizes.append(tuple(size))
    padded = images.new_zeros(len(views), 3, *(max(v.shape[i] for v in views) for i in (1, 2)))
    for i, view in enumerate(views):
        padded[i, :, : view.shape[1], : view.shape[2]] = view
    return padded, boxes, sizes
