"""MIST's pseudo boxes for one refinement stream of one image (Ren et al.,
"Instance-aware, Context-focused, and Memory-efficient Weakly Supervised Object Detection",
CVPR 2020).

Follows NVlabs/wetectron (commit 44e6fa9): ``wetectron/modeling/roi_heads/weak_head/
pseudo_label_generator.py`` ``mist_layer`` (lines 16-83), built by ``loss.py``
``RoIRegLossComputation`` (line 182), with ``OICR_P`` 0.15
(``configs/voc/V_16_voc07.yaml`` line 20, ``wetectron/config/defaults.py`` line 288).

Pseudo boxes (:func:`mist_targets`), for each class present in the image, in ascending order:
its ``k = int(R * 0.15)`` proposals of highest previous-stream score (lines 26-35); the first
is always kept (line 39) and the one at rank ``i`` is kept if its IoU with *every* higher-ranked
one of the k, kept or suppressed, is below 0.2 (``mist_layer``'s default ``iou=0.2``, line 17:
``RoIRegLoss`` builds ``mist_layer(refine_p)``, ``loss.py`` line 182; ``ious[:, ii:ii+1, :ii]``,
lines 40-42). A kept box is a pseudo box of that class, scored by its score (lines 44-48), in
class order, then rank order; one proposal may be a pseudo box of several classes.

Assignment (lines 50-65): every proposal goes to the pseudo box it overlaps most (IoU with the +1
convention, the first pseudo box on ties, as the code's ``numpy.argmax``), takes its class if the
IoU is at least 0.5 (``cfg.MODEL.ROI_HEADS.FG_IOU_THRESHOLD``; background is ``< 0.5``, line 64)
and background (label 0) otherwise, and its score as weight, background too: nothing is ignored.
Its regression target is that pseudo box (``matched_targets``, lines 69-72), to be encoded by
:func:`wsl.structures.box_coder.encode_deltas`.

Departures: ``k`` is at least 1 (wetectron's ``k_ind[:, 0] = 1`` fails when ``int(R * 0.15)`` is
0, i.e. below 7 proposals); scores are sorted stably (the first proposal first on ties;
``torch.sort`` on the GPU promises no order); scores are clamped into ``[1e-9, 1 - 1e-9]`` as
the other pseudo-label rules here (``check_scores``; wetectron does not clamp: the clamp keeps
the order and only merges scores below 1e-9, and float32 has none in ``(1 - 1e-9, 1)``); IoUs
are float64 on the CPU (wetectron: float32 on the GPU). An image without a positive class gets
background labels and weight 0 everywhere, as wetectron's corner case (lines 77-83), with each
proposal as its own target box (wetectron's zero regression targets). With these, labels,
weights and encoded regression targets equal those of a transcription of ``mist_layer``
(checked on 300 random images without ties).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from wsl.pseudo_labels.oicr import FG_THRESHOLD, check_scores, present_classes
from wsl.structures.boxes import voc_iou

TOP_PORTION = 0.15  # cfg.MODEL.ROI_WEAK_HEAD.OICR_P: the share of proposals ranked per class
PSEUDO_IOU_THRESHOLD = 0.2  # mist_layer(p, iou=0.2): a top box this close to a higher one drops


class MISTTargets(NamedTuple):
    """MIST's pseudo labels of one image's R proposals for one stream, from P pseudo boxes."""

    labels: Tensor  # (R,) int64 in 0..C: 0 background, c + 1 class c
    weights: Tensor  # (R,) float32: the score of the proposal's pseudo box
    target_boxes: Tensor  # (R, 4) the pseudo box each proposal overlaps most (regression target)
    centre_boxes: Tensor  # (P, 4) the pseudo boxes
    centre_labels: Tensor  # (P,) int64 in 1..C
    centre_scores: Tensor  # (P,) float32


def mist_targets(
    boxes: Tensor,
    scores: Tensor,
    image_labels: Tensor,
    top_portion: float = TOP_PORTION,
    iou_threshold: float = PSEUDO_IOU_THRESHOLD,
    fg_threshold: float = FG_THRESHOLD,
) -> MISTTargets:
    """MIST's pseudo labels of one image (see the module docstring).

    ``boxes`` (R, 4) inclusive ``x1, y1, x2, y2``; ``scores`` (R, C) the previous stream's scores
    without background (stream 0: WSDDN's region scores; later: the previous stream's softmax
    without its column 0); ``image_labels`` (C,), positive where a class is present. The outputs
    are on ``boxes``' device, ``target_boxes`` and ``centre_boxes`` rows of ``boxes``.
    """
    prob = check_scores(boxes, scores, image_labels)
    classes = present_classes(image_labels)
    device, num_boxes = boxes.device, len(boxes)
    if not classes:
        return MISTTargets(
            torch.zeros(num_boxes, dtype=torch.int64, device=device),
            torch.zeros(num_boxes, device=device),
            boxes,
            boxes[:0],
            torch.zeros(0, dtype=torch.int64, device=device),
            torch.zeros(0, device=device),
        )
    k = max(1, int(num_boxes * top_portion))
    class_index = torch.tensor(classes, dtype=torch.int64)
    sorted_scores, order = prob[:, class_index].sort(dim=0, descending=True, stable=True)
    top, top_scores = order[:k].T, sorted_scores[:k].T  # (G, k): each class's ranking
    cpu_boxes = boxes.detach().to("cpu", torch.float64)
    top_boxes = cpu_boxes[top]  # (G, k, 4)
    ious = voc_iou(top_boxes[:, :, None], top_boxes[:, None])  # (G, k, k)
    # Rank i against every higher rank j < i of the k, kept or not (wetectron lines 40-42).
    keep = ious.tril(diagonal=-1).amax(dim=2) < iou_threshold
    keep[:, 0] = True
    centre_index = top[keep]  # class order, then rank order, as _boxes.bbox[k_ind]
    centre_labels = (class_index[:, None] + 1).expand_as(top)[keep]
    centre_scores = top_scores[keep].to(torch.float32)
    overlaps = voc_iou(cpu_boxes.numpy()[:, None], cpu_boxes[centre_index].numpy()[None])
    nearest = torch.from_numpy(overlaps.argmax(axis=1))  # the first pseudo box on ties
    foreground = torch.from_numpy(overlaps.max(axis=1)) >= fg_threshold
    centre_boxes = boxes[centre_index.to(device)]
    return MISTTargets(
        centre_labels[nearest].where(foreground, 0).to(device),
        centre_scores[nearest].to(device),
        centre_boxes[nearest.to(device)],
        centre_boxes,
        centre_labels.to(device),
        centre_scores.to(device),
    )
