"""MIST's pseudo boxes and per-stream loss for one refinement stream of one image (Ren et al.,
"Instance-aware, Context-focused, and Memory-efficient Weakly Supervised Object Detection",
CVPR 2020).

Follows NVlabs/wetectron (commit 44e6fa9): ``wetectron/modeling/roi_heads/weak_head/
pseudo_label_generator.py`` ``mist_layer`` (lines 16-83) for the pseudo labels, ``loss.py``
``RoIRegLossComputation.__call__`` (lines 220-297) for the loss, with ``OICR_P`` 0.15
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
Its regression target is that pseudo box (``matched_targets``, lines 69-72), encoded by
:func:`wsl.structures.box_coder.encode_deltas` in the loss.

Loss (:func:`mist_loss`), ``loss.py`` lines 264-284: the stream's weighted cross-entropy on its
logits over the C + 1 classes, the mean over the R proposals; plus smooth-L1 (beta 1) between
the deltas the stream predicts for each foreground proposal's pseudo class and its encoded
target, weighted by its weight, summed, divided by R.

How the caller combines the streams (``loss.py`` lines 248-297, ``roi_weak_predictors.py``
``MISTPredictor`` lines 112-174, ``weak_head.py`` lines 96-130):

- Three streams, each a ``Linear`` to C + 1 logits and a ``Linear`` to ``(C + 1) * 4`` deltas
  (``num_classes`` counts the background; class-specific, ``CLS_AGNOSTIC_BBOX_REG`` False).
- Stream 0 learns from WSDDN's region scores (``softmax(cls) * softmax_over_rois(det)``), stream
  k from the softmax of stream k - 1's logits, each with its own pseudo labels and regression
  targets from this function; both of stream 0's losses are multiplied by
  :data:`FIRST_STREAM_WEIGHT` (3), the others by 1. The MIL loss and the six stream losses are
  summed (``engine/trainer.py`` line 95), each divided by the images on the GPU (lines 292-295:
  its ``zip`` with the four accuracy keys divides only the first four losses, which is moot with
  the authors' one image per GPU, 8 GPUs, ``IMS_PER_BATCH`` 8).
- Test time (``REGRESS_HEUR`` "AVG"): the streams' softmax scores are averaged, and so are their
  raw deltas, decoded once on the proposals and clipped to the image (``box_head/inference.py``
  ``PostProcessor``); with ``TEST.BBOX_AUG`` (HEUR "AVG") the decoded boxes and scores of each
  proposal are then averaged over the views before the per-class NMS (``engine/bbox_aug.py``).

Departures: ``k`` is at least 1 (wetectron's ``k_ind[:, 0] = 1`` fails when ``int(R * 0.15)`` is
0, i.e. below 7 proposals); scores are sorted stably (the first proposal first on ties;
``torch.sort`` on the GPU promises no order); scores are clamped into ``[1e-9, 1 - 1e-9]`` as
the other pseudo-label rules here (``check_scores``; wetectron does not clamp: the clamp keeps
the order and only merges scores below 1e-9, and float32 has none in ``(1 - 1e-9, 1)``); IoUs
are float64 on the CPU (wetectron: float32 on the GPU). An image without a positive class gets
background labels and weight 0 everywhere, as wetectron's corner case (lines 77-83), with each
proposal as its own target box (wetectron's zero regression targets). With these, labels,
weights and encoded regression targets equal those of a transcription of ``mist_layer`` and
this loss equals ``RoIRegLoss``'s per-stream terms (checked on 300 random images without ties).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from wsl.pseudo_labels.oicr import FG_THRESHOLD, check_scores, present_classes
from wsl.structures.box_coder import BBOX_REG_WEIGHTS, Weights, encode_deltas
from wsl.structures.boxes import voc_iou

TOP_PORTION = 0.15  # cfg.MODEL.ROI_WEAK_HEAD.OICR_P: the share of proposals ranked per class
PSEUDO_IOU_THRESHOLD = 0.2  # mist_layer(p, iou=0.2): a top box this close to a higher one drops
FIRST_STREAM_WEIGHT = 3.0  # RoIRegLoss: lmda = 3 if i == 0 else 1, on both losses of stream 0
SMOOTH_L1_BETA = 1.0  # RoIRegLoss: smooth_l1_loss(..., beta=1)


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


def mist_loss(
    logits: Tensor,
    deltas: Tensor,
    boxes: Tensor,
    targets: MISTTargets,
    weights: Weights = BBOX_REG_WEIGHTS,
) -> tuple[Tensor, Tensor]:
    """``(cls_loss, reg_loss)`` of one stream of one image, 0-dim tensors (``RoIRegLoss``, lines
    264-284; stream 0's are then multiplied by :data:`FIRST_STREAM_WEIGHT` by the caller).

    ``logits`` (R, C + 1) the stream's scores before softmax (background column 0); ``deltas``
    (R, (C + 1) * 4) its class-specific box deltas, class ``j``'s in columns ``4j..4j+3``;
    ``boxes`` (R, 4) the proposals; ``targets`` from :func:`mist_targets`.

    ``cls_loss = mean_r w_r CE(logits_r, y_r)``; ``reg_loss = sum_{r: y_r > 0} w_r
    sum smooth_l1(deltas_r[y_r], encode(target_r, box_r)) / R``, with smooth-L1's beta 1.
    """
    num_boxes = len(targets.labels)
    if logits.ndim != 2 or len(logits) != num_boxes or len(boxes) != num_boxes:
        raise ValueError(
            f"logits must be (R, C + 1) and boxes (R, 4) with R = {num_boxes} proposals, got "
            f"{tuple(logits.shape)} and {tuple(boxes.shape)}"
        )
    if deltas.shape != (num_boxes, 4 * logits.shape[1]):
        raise ValueError(
            f"deltas must be (R, (C + 1) * 4) = ({num_boxes}, {4 * logits.shape[1]}): "
            f"class-specific, background first, got {tuple(deltas.shape)}"
        )
    cross_entropy = F.cross_entropy(logits, targets.labels, reduction="none")
    cls_loss = (cross_entropy * targets.weights.to(logits)).mean()
    positive = (targets.labels > 0).nonzero().squeeze(1)
    columns = 4 * targets.labels[positive, None] + torch.arange(4, device=deltas.device)
    predicted = deltas[positive[:, None], columns]
    wanted = encode_deltas(targets.target_boxes[positive], boxes[positive], weights)
    smooth_l1 = F.smooth_l1_loss(
        predicted, wanted.to(predicted), reduction="none", beta=SMOOTH_L1_BETA
    )
    reg_loss = (smooth_l1 * targets.weights[positive, None].to(predicted)).sum() / num_boxes
    return cls_loss, reg_loss
