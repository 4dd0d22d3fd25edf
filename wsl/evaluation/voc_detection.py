"""PASCAL VOC detection AP, computed as the VOC devkit's ``VOCevaldet.m`` computes it.

Per class (hand-written: torchmetrics' and pycocotools' mAP follow COCO, not the devkit):

1. detections are sorted by score, descending; equal scores keep their input order (images
   in id order, then detections in the order given);
2. each detection's best GT is the GT of its class in its image with the largest IoU (+1
   pixel convention, see ``iou.py``; the first on ties), matched or not, difficult or not;
3. if that IoU is at least ``iou_threshold`` (``ovmax >= minoverlap``, as the MATLAB
   devkit; py-faster-rcnn's ``voc_eval.py`` uses ``>``, which differs only for a box at
   exactly IoU 0.5): a difficult best GT makes the detection ignored
   (neither TP nor FP), else the first detection on that GT is a TP and later ones are
   duplicates, FP; otherwise the detection is a FP;
4. positives are the non-difficult GT; precision and recall are cumulative over the
   counted (not ignored) detections;
5. AP is VOC2007's 11-point interpolation (``use_07_metric=True``: mean over recall
   thresholds ``np.arange(0.0, 1.1, 0.1)``, exactly those floats, of the max precision at
   recall >= t, 0 when none) or VOC2010's area under the monotone precision envelope.

A class without a non-difficult GT has AP NaN (recall is undefined) and is left out of the
mean; a class with GT and no detection has AP 0.

Vectorized: a detection's best GT does not depend on the order, only "first detection on
this GT" does, so one pass finds every best GT (IoUs of each detection with the GT of its
class in its image, as flat pairs) and the first hit of each GT is ``np.unique``'s first
index in score order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsl.evaluation.per_image import DetectionEvaluator, check_classes, defined_mean
from wsl.runtime.atomic import atomic_path
from wsl.runtime.names import contained_path
from wsl.structures.boxes import voc_iou
from wsl.structures.detections import ArrayLike, ImageDetections, ImageGroundTruth, Record


@dataclass(frozen=True)
class ClassAP:
    """AP of one class and the precision/recall curve it came from (one point per counted
    detection, in score order)."""

    ap: float
    precision: np.ndarray
    recall: np.ndarray
    num_positives: int


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from a cumulative precision/recall curve: VOC07 11-point or VOC2010 all-point."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = precision[recall >= t]
            ap += (above.max() if above.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    envelope = np.maximum.accumulate(np.concatenate(([0.0], precision, [0.0]))[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))


_NO_DETECTIONS = ImageDetections.of(np.empty((0, 4)), np.empty(0), np.empty(0))
_NO_GROUND_TRUTH = ImageGroundTruth.of(np.empty((0, 4)), np.empty(0), np.empty(0))


def _concatenate(records: Sequence[Record], empty: Record) -> Record:
    """All images' records as one record (``empty`` fixes the shapes when there are none)."""
    return type(empty)(*(np.concatenate(field) for field in zip(empty, *records, strict=True)))


def _best_gt(
    det_image: np.ndarray,
    dets: ImageDetections,
    gt_image: np.ndarray,
    gts: ImageGroundTruth,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: largest IoU with a GT of its class in its image (-inf if none), and
    that GT's index (-1 if none; the first GT on ties)."""
    gt_key = gt_image * num_classes + gts.classes
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_key = gt_key[gt_order]
    det_key = det_image * num_classes + dets.classes
    start = np.searchsorted(sorted_key, det_key, side="left")
    count = np.searchsorted(sorted_key, det_key, side="right") - start
    # flat (detection, GT) pairs, grouped by detection, GT in input order within a group
    pair_det = np.repeat(np.arange(len(det_key)), count)
    first_pair = np.cumsum(count) - count
    pair_gt = gt_order[np.repeat(start - first_pair, count) + np.arange(count.sum())]
    iou = voc_iou(dets.boxes[pair_det], gts.boxes[pair_gt])

    best_iou = np.full(len(det_key), -np.inf)
    best_gt = np.full(len(det_key), -1)
    has_gt = count > 0
    if has_gt.any():
        best_iou[has_gt] = np.maximum.reduceat(iou, first_pair[has_gt])
        is_best = np.flatnonzero(iou == best_iou[pair_det])
        first_best = np.unique(pair_det[is_best], return_index=True)[1]
        best_gt[pair_det[is_best[first_best]]] = pair_gt[is_best[first_best]]
    return best_iou, best_gt


def voc_detection_ap(
    detections: Sequence[ImageDetections],
    ground_truths: Sequence[ImageGroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> list[ClassAP]:
    """AP of every class, from the detections and ground truth of each image (same order)."""
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} images of detections, {len(ground_truths)} of GT")
    images = np.arange(len(detections))
    det_image = np.repeat(images, [len(d.scores) for d in detections])
    gt_image = np.repeat(images, [len(g.classes) for g in ground_truths])
    dets = _concatenate(detections, _NO_DETECTIONS)
    gts = _concatenate(ground_truths, _NO_GROUND_TRUTH)
    check_classes(dets.classes, num_classes, "detection")
    check_classes(gts.classes, num_classes, "ground-truth")

    best_iou, best_gt = _best_gt(det_image, dets, gt_image, gts, num_classes)
    num_positives = np.bincount(gts.classes[~gts.difficult], minlength=num_classes)
    results = []
    for c in range(num_classes):
        of_class = np.flatnonzero(dets.classes == c)
        order = of_class[np.argsort(-dets.scores[of_class], kind="stable")]
        tp, counted = _true_positives(
            best_iou[order] >= iou_threshold, best_gt[order], gts.difficult
        )
        results.append(_class_ap(tp[counted], int(num_positives[c]), use_07_metric))
    return results


def _true_positives(
    hit: np.ndarray, best_gt: np.ndarray, gt_difficult: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 for one class's detections in score order: which are TP, which are counted
    (not ignored); ``hit``: best IoU above the threshold, ``best_gt``: that GT's index."""
    ignored = hit.copy()
    ignored[hit] = gt_difficult[best_gt[hit]]
    candidate = np.flatnonzero(hit & ~ignored)
    tp = np.zeros(len(hit), dtype=bool)
    tp[candidate[np.unique(best_gt[candidate], return_index=True)[1]]] = True  # first per GT
    return tp, ~ignored


def _class_ap(tp: np.ndarray, num_positives: int, use_07_metric: bool) -> ClassAP:
    """Steps 4 and 5 for one class: the curve and AP from its counted detections' TP flags."""
    tp_cum = np.cumsum(tp, dtype=np.float64)
    precision = tp_cum / np.arange(1, len(tp) + 1)
    if not num_positives:
        return ClassAP(math.nan, precision, np.full_like(tp_cum, np.nan), 0)
    recall = tp_cum / num_positives
    return ClassAP(voc_ap(recall, precision, use_07_metric), precision, recall, num_positives)


class VOCDetectionEvaluator(DetectionEvaluator):
    """VOC detection AP over every processed image of every process (detectron2 style)."""

    def __init__(
        self, class_names: Sequence[str], use_07_metric: bool = True, iou_threshold: float = 0.5
    ) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.use_07_metric = use_07_metric
        self.iou_threshold = iou_threshold

    def evaluate(self) -> dict[str, Any]:
        """``{"mAP": float, "ap_per_class": {name: AP}, "curves": {name: ClassAP}}`` (same on
        every rank), and the same mean and per-class APs by VOC2010's all-point rule from the
        same curves (``"mAP_allpoint"``, ``"ap_per_class_allpoint"``; WSDDN's code reports
        those); AP is NaN for a class without non-difficult GT."""
        detections, ground_truths = self.gathered_detections()
        per_class = voc_detection_ap(
            detections,
            ground_truths,
            len(self.class_names),
            self.iou_threshold,
            self.use_07_metric,
        )
        curves = dict(zip(self.class_names, per_class, strict=True))
        all_point = {
            name: r.ap if math.isnan(r.ap) else voc_ap(r.recall, r.precision, use_07_metric=False)
            for name, r in curves.items()
        }
        return {
            "mAP": defined_mean([r.ap for r in per_class]),
            "ap_per_class": {name: r.ap for name, r in curves.items()},
            "curves": curves,
            "mAP_allpoint": defined_mean(list(all_point.values())),
            "ap_per_class_allpoint": all_point,
        }


def write_devkit_results(
    directory: str | Path,
    split: str,
    class_names: Sequence[str],
    image_ids: Sequence[str],
    detections: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
) -> list[Path]:
    """Write the VOC devkit's ``comp4_det_<split>_<class>.txt``, one per class (even empty).

    Lines are ``<image_id> <score> <x1> <y1> <x2> <y2>``: the score as Python's shortest
    repr that reads back to the same float64 (never rounded), boxes 1-based as the devkit
    reads them. Each file is written to a temporary file beside it, then renamed. Every file
    name is checked to be a plain name (:func:`~wsl.runtime.names.contained_path`) before any
    file is written, so a class or split such as ``../x`` raises :class:`ValueError` and
    writes nothing.
    """
    paths = [contained_path(directory, f"comp4_det_{split}_{name}.txt") for name in class_names]
    lines: list[list[str]] = [[] for _ in class_names]
    for image_id, det in zip(image_ids, detections, strict=True):
        boxes, scores, classes = ImageDetections.of(*det)
        check_classes(classes, len(class_names), "detection")
        for box, score, c in zip(
            (boxes + 1).tolist(), scores.tolist(), classes.tolist(), strict=True
        ):
            lines[c].append(f"{image_id} {score!r} {box[0]!r} {box[1]!r} {box[2]!r} {box[3]!r}\n")
    for path, class_lines in zip(paths, lines, strict=True):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(class_lines))
    return paths
