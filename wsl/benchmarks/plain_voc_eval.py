"""The plain baseline of VOC07 AP: py-faster-rcnn's ``voc_eval.py`` ported loop for loop.

One class at a time: gather the class's detections (as ``voc_eval.py`` reads its results file),
sort them by score, then walk them one detection at a time against the ground truth of its
image, marking matched GT as ``det``. Three changes, so that it computes what
:func:`wsl.evaluation.voc_detection.voc_detection_ap` computes: the overlap test is ``>=`` (the
MATLAB devkit's ``VOCevaldet.m``; ``voc_eval.py`` has ``>``), the sort is stable, and a class
without non-difficult GT has AP NaN (``voc_eval.py`` divides by zero). Inputs are in memory (no
files): the same records the project's function takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsl.structures.detections import ImageDetections, ImageGroundTruth


def plain_voc07_ap(
    detections: Sequence[ImageDetections],
    ground_truths: Sequence[ImageGroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> list[float]:
    """VOC07 11-point AP of every class (NaN for a class without non-difficult GT)."""
    lines: list[list[tuple[int, float, list[float]]]] = [[] for _ in range(num_classes)]
    for image, det in enumerate(detections):  # one results-file line per detection
        rows = zip(det.boxes.tolist(), det.scores.tolist(), det.classes.tolist(), strict=True)
        for box, score, c in rows:
            lines[c].append((image, score, box))
    return [_class_ap(lines[c], ground_truths, c, iou_threshold) for c in range(num_classes)]


def _class_ap(
    lines: list[tuple[int, float, list[float]]],
    ground_truths: Sequence[ImageGroundTruth],
    c: int,
    iou_threshold: float,
) -> float:
    """``voc_eval.py`` for class ``c``, whose results-file ``lines`` are (image, score, box)."""
    class_recs = {}
    npos = 0
    for image, gt in enumerate(ground_truths):
        mask = gt.classes == c
        difficult = gt.difficult[mask]
        npos += int((~difficult).sum())
        class_recs[image] = {
            "bbox": gt.boxes[mask],
            "difficult": difficult,
            "det": [False] * len(difficult),
        }

    image_ids = [x[0] for x in lines]
    confidence = np.array([x[1] for x in lines])
    bb = np.array([x[2] for x in lines]).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind="stable")
    bb = bb[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]

    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        r = class_recs[image_ids[d]]
        box = bb[d, :].astype(float)
        ovmax = -np.inf
        bbgt = r["bbox"].astype(float)
        if bbgt.size > 0:
            ixmin = np.maximum(bbgt[:, 0], box[0])
            iymin = np.maximum(bbgt[:, 1], box[1])
            ixmax = np.minimum(bbgt[:, 2], box[2])
            iymax = np.minimum(bbgt[:, 3], box[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
                + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax >= iou_threshold:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0

    if npos == 0:
        return float("nan")
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
        ap = ap + p / 11.0
    return float(ap)
