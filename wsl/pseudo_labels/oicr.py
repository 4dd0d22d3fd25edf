"""OICR's per-proposal pseudo labels for one refinement stream of one image.

Follows ppengtang/pcl.pytorch ``lib/model/pcl/pcl.py``: ``OICR`` → ``_get_highest_score_proposals``
(the seeds) and ``get_proposal_clusters`` (the assignment), itself the Caffe layer of
ppengtang/oicr ``lib/oicr_layer/layer.py`` (``_get_highest_score_proposals``, ``_sample_rois``)
plus one change: proposals whose best IoU with a seed is below ``BG_THRESH`` (0.1) get weight 0
(ignored). ``bg_threshold=0`` gives the Caffe layer, which keeps them as weighted background.

Seeds: for each class present in the image (ascending class order), the proposal with the highest
previous-stream score for it (the first one on ties, ``np.argmax``), weighted by that score; the
seed's row of scores is then zeroed for the later classes, so one proposal seeds at most one
class. Assignment: every proposal goes to the seed it overlaps most (IoU with the +1 convention;
the first seed in class order on ties), takes that seed's class if the IoU is at least
``fg_threshold`` (0.5) and background (label 0) otherwise, and the seed's score as its weight;
background proposals below ``bg_threshold`` get weight 0. Scores are clamped into
``[1e-9, 1 - 1e-9]`` first, as ``OICR`` does.

Labels are 0 for background and ``c + 1`` for class ``c`` of the image labels, the column of
``RefinementHeads``' scores (background first). One departure: an image without a positive class
(the authors' code fails on it) gets background labels, cluster -1 and weight 0 everywhere, so it
adds nothing to the loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from wsl.structures.boxes import voc_iou

FG_THRESHOLD = 0.5  # cfg.TRAIN.FG_THRESH
BG_THRESHOLD = 0.1  # cfg.TRAIN.BG_THRESH: lower best overlap → ignored (weight 0)
SCORE_EPS = 1e-9  # OICR / PCL clamp the previous stream's scores into [eps, 1 - eps]


class ProposalTargets(NamedTuple):
    """Pseudo labels of one image's R proposals for one refinement stream, from P centres.

    OICR's centres are its seeds (one per positive class), PCL's its cluster centres.
    """

    labels: Tensor  # (R,) int64 in 0..C: 0 background, c + 1 class c
    weights: Tensor  # (R,) float: the centre's score; 0 where ignored (IoU < bg_threshold)
    clusters: Tensor  # (R,) int64: index of the proposal's centre in 0..P-1; -1 for background
    centre_boxes: Tensor  # (P, 4) the centres' boxes
    centre_labels: Tensor  # (P,) int64 in 1..C
    centre_scores: Tensor  # (P,) float: the weight a centre gives its proposals


def present_classes(image_labels: Tensor) -> list[int]:
    """Indices of the classes present in an image, ascending (``image_labels`` (C,) > 0)."""
    if image_labels.ndim != 1:
        raise ValueError(f"image_labels must be a (C,) tensor, got {tuple(image_labels.shape)}")
    return [int(c) for c in (image_labels > 0).nonzero().flatten()]


def check_scores(boxes: Tensor, scores: Tensor, image_labels: Tensor) -> Tensor:
    """The previous stream's ``scores`` (R, C) as float64 on the CPU, clamped into
    ``[SCORE_EPS, 1 - SCORE_EPS]``; raises, saying what is wrong, on mismatched shapes."""
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise ValueError(f"boxes must be a non-empty (R, 4) tensor, got {tuple(boxes.shape)}")
    if scores.shape != (len(boxes), len(image_labels)):
        raise ValueError(
            f"scores must be (R, C) = ({len(boxes)}, {len(image_labels)}): one per proposal and "
            f"class, background dropped (pass probs[:, 1:] of a refinement stream), got "
            f"{tuple(scores.shape)}"
        )
    return scores.detach().to("cpu", torch.float64).clamp(SCORE_EPS, 1 - SCORE_EPS)


def oicr_targets(
    boxes: Tensor,
    scores: Tensor,
    image_labels: Tensor,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
) -> ProposalTargets:
    """OICR's pseudo labels of one image (see the module docstring).

    ``boxes`` (R, 4) inclusive ``x1, y1, x2, y2``; ``scores`` (R, C) the previous stream's scores
    (stream 0: WSDDN's region scores; later: the previous refinement stream's softmax without its
    background column); ``image_labels`` (C,), positive where a class is present.
    """
    prob = check_scores(boxes, scores, image_labels)
    classes = present_classes(image_labels)
    seeds, seed_scores = [], []
    for c in classes:
        best = int(prob[:, c].argmax())  # first maximum, as np.argmax
        seeds.append(best)
        seed_scores.append(float(prob[best, c]))
        prob[best] = 0  # cls_prob[max_index, :] = 0
    seed_index = torch.tensor(seeds, dtype=torch.int64)
    return assign_to_centres(
        boxes,
        boxes[seed_index.to(boxes.device)],
        torch.tensor([c + 1 for c in classes], dtype=torch.int64),
        torch.tensor(seed_scores, dtype=torch.float64),
        fg_threshold,
        bg_threshold,
    )


def assign_to_centres(
    boxes: Tensor,
    centre_boxes: Tensor,
    centre_labels: Tensor,
    centre_scores: Tensor,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
) -> ProposalTargets:
    """Each proposal to the centre it overlaps most, as pcl.pytorch's ``get_proposal_clusters``.

    Best IoU (the first centre on ties) ≥ ``fg_threshold``: the centre's label and index;
    otherwise label 0 and cluster -1. Weight: the centre's score, 0 below ``bg_threshold``.
    The outputs are on ``boxes``' device, the weights in float32.
    """
    device, num_boxes = boxes.device, len(boxes)
    if len(centre_boxes) == 0:
        return ProposalTargets(
            torch.zeros(num_boxes, dtype=torch.int64, device=device),
            torch.zeros(num_boxes, device=device),
            torch.full((num_boxes,), -1, dtype=torch.int64, device=device),
            centre_boxes.reshape(0, 4),
            centre_labels.to(device),
            centre_scores.to(device, torch.float32),
        )
    a = boxes.detach().to("cpu", torch.float64).numpy()
    b = centre_boxes.detach().to("cpu", torch.float64).numpy()
    overlaps = voc_iou(a[:, None], b[None])  # (R, P)
    nearest = torch.from_numpy(overlaps.argmax(axis=1))  # the first centre on ties
    best_iou = torch.from_numpy(overlaps.max(axis=1))
    foreground = best_iou >= fg_threshold
    labels = centre_labels[nearest].where(foreground, 0)
    weights = centre_scores[nearest].where(best_iou >= bg_threshold, 0.0)
    clusters = nearest.where(foreground, -1)
    return ProposalTargets(
        labels.to(device),
        weights.to(device, torch.float32),
        clusters.to(device),
        centre_boxes,
        centre_labels.to(device),
        centre_scores.to(device, torch.float32),
    )
