"""Box regression deltas: a box relative to a proposal, as the R-CNN family encodes it.

Follows NVlabs/wetectron ``wetectron/modeling/box_coder.py`` (``BoxCoder``, lines 7-95; itself
maskrcnn-benchmark's) with its default weights ``(10, 10, 5, 5)``
(``cfg.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS``, ``wetectron/config/defaults.py`` line 213). A box is
``x2 - x1 + 1`` pixels wide (wetectron's ``TO_REMOVE = 1``), which is this project's inclusive-pixel
convention (``shared/DESIGN.md``), so boxes go in and come out as they are stored everywhere else.

Encode (lines 22-50): with widths ``w = x2 - x1 + 1`` and centres ``cx = x1 + w / 2``,
``(wx (cx' - cx) / w, wy (cy' - cy) / h, ww log(w' / w), wh log(h' / h))`` for a target box
``'`` and a proposal. Decode (lines 52-95) inverts it, with ``dw`` and ``dh`` (after dividing by
their weights) clamped to at most ``log(1000 / 16)`` before ``exp`` and the far corner at
``cx + w / 2 - 1``.

Written out rather than taken from torchvision's ``models.detection._utils.BoxCoder``: that
private class has no ``+ 1``; fed boxes shifted to an exclusive end
(:func:`wsl.structures.boxes.inclusive_to_continuous`) it computes the same deltas, but the width
``(x2 + 1) - x1`` rounds differently from wetectron's ``(x2 - x1) + 1`` in float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # wetectron cfg.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS
BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # BoxCoder's bbox_xform_clip: largest dw, dh before exp

Weights = tuple[float, float, float, float]


def _centres_and_sizes(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``cx, cy, w, h`` of inclusive boxes (K, 4): ``w = x2 - x1 + 1``, ``cx = x1 + w / 2``."""
    widths = boxes[:, 2] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def encode_deltas(
    target_boxes: Tensor, proposals: Tensor, weights: Weights = BBOX_REG_WEIGHTS
) -> Tensor:
    """(K, 4) deltas ``dx, dy, dw, dh`` that take each of ``proposals`` (K, 4) to the box of
    ``target_boxes`` (K, 4) in the same row (wetectron ``BoxCoder.encode(reference_boxes,
    proposals)``)."""
    if target_boxes.shape != proposals.shape or proposals.ndim != 2 or proposals.shape[1] != 4:
        raise ValueError(
            f"target_boxes and proposals must both be (K, 4), got {tuple(target_boxes.shape)} "
            f"and {tuple(proposals.shape)}"
        )
    ex_x, ex_y, ex_w, ex_h = _centres_and_sizes(proposals)
    gt_x, gt_y, gt_w, gt_h = _centres_and_sizes(target_boxes)
    wx, wy, ww, wh = weights
    return torch.stack(
        (
            wx * (gt_x - ex_x) / ex_w,
            wy * (gt_y - ex_y) / ex_h,
            ww * torch.log(gt_w / ex_w),
            wh * torch.log(gt_h / ex_h),
        ),
        dim=1,
    )


def decode_deltas(
    deltas: Tensor,
    proposals: Tensor,
    weights: Weights = BBOX_REG_WEIGHTS,
    clip: float = BBOX_XFORM_CLIP,
) -> Tensor:
    """Boxes (K, 4 M) from ``deltas`` (K, 4 M), M sets of ``dx, dy, dw, dh`` per proposal (one per
    class for class-specific regression), applied to ``proposals`` (K, 4) (wetectron
    ``BoxCoder.decode(rel_codes, boxes)``; the boxes are not clipped to the image)."""
    if deltas.ndim != 2 or deltas.shape[1] % 4 or len(deltas) != len(proposals):
        raise ValueError(
            f"deltas must be (K, 4 M) for K = {len(proposals)} proposals, got {tuple(deltas.shape)}"
        )
    ctr_x, ctr_y, widths, heights = _centres_and_sizes(proposals.to(deltas.dtype))
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=clip)
    dh = (deltas[:, 3::4] / wh).clamp(max=clip)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    corners = (
        pred_ctr_x - 0.5 * pred_w,
        pred_ctr_y - 0.5 * pred_h,
        pred_ctr_x + 0.5 * pred_w - 1,  # inclusive far corner: wetectron's "- 1"
        pred_ctr_y + 0.5 * pred_h - 1,
    )
    return torch.stack(corners, dim=2).flatten(1)
