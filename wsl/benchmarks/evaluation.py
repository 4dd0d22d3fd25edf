"""Evaluation speed: :func:`~wsl.evaluation.voc_detection.voc_detection_ap` against the plain
per-detection loop of :mod:`wsl.benchmarks.plain_voc_eval` on synthetic detections.

The plain loop is timed on the first ``subset`` images only and extrapolated linearly to all
images (its cost is one loop turn per detection); both are also compared on that subset, where
they must give the same AP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from wsl.benchmarks.plain_voc_eval import plain_voc07_ap
from wsl.evaluation.voc_detection import voc_detection_ap
from wsl.structures.detections import ImageDetections, ImageGroundTruth

DIFFICULT_FRACTION = 0.1  # of GT objects
ON_GT_FRACTION = 0.5  # of detections: jittered around a GT box; the others are random boxes
RIGHT_CLASS_FRACTION = 0.8  # of the jittered detections: they carry the GT's class
T = TypeVar("T")


@dataclass(frozen=True)
class EvaluationResult:
    """Times of both AP computations (seconds) and how far their APs are apart."""

    images: int
    detections: int
    wsl_seconds: float  # voc_detection_ap on all images (median of the repeats)
    subset_images: int
    wsl_subset_seconds: float
    plain_subset_seconds: float
    max_abs_ap_difference: float  # over classes, on the subset (NaN APs must coincide)

    @property
    def plain_seconds_extrapolated(self) -> float:
        """The plain loop's time on all images, linear in the number of images."""
        return self.plain_subset_seconds * self.images / self.subset_images


def synthetic_records(
    num_images: int, num_classes: int, detections_per_image: int, seed: int = 0
) -> tuple[list[ImageDetections], list[ImageGroundTruth]]:
    """VOC-like images (300-500 px sides) with 1-4 integer GT boxes (10% difficult) and
    ``detections_per_image`` float boxes: half jittered around a GT (mostly its class, higher
    scores), half random boxes of random classes."""
    rng = np.random.default_rng(seed)
    detections, ground_truths = [], []
    for _ in range(num_images):
        size = rng.integers(300, 501, size=2).astype(np.float64)  # width, height
        num_gt = int(rng.integers(1, 5))
        gt_boxes = np.rint(_random_boxes(rng, num_gt, size, min_side=20))
        gt_classes = rng.integers(0, num_classes, num_gt)
        ground_truths.append(
            ImageGroundTruth(gt_boxes, gt_classes, rng.random(num_gt) < DIFFICULT_FRACTION)
        )
        on_gt = int(detections_per_image * ON_GT_FRACTION)
        which = rng.integers(0, num_gt, on_gt)
        sides = np.tile(gt_boxes[which, 2:] - gt_boxes[which, :2] + 1, 2)  # w, h, w, h
        jittered = gt_boxes[which] + rng.normal(0, 0.1, (on_gt, 4)) * sides
        jittered = np.clip(np.sort(jittered.reshape(-1, 2, 2), axis=1).reshape(-1, 4), 0, None)
        jittered = np.minimum(jittered, np.tile(size - 1, 2))
        wrong = rng.random(on_gt) >= RIGHT_CLASS_FRACTION
        classes = np.where(wrong, rng.integers(0, num_classes, on_gt), gt_classes[which])
        random = detections_per_image - on_gt
        detections.append(
            ImageDetections(
                np.concatenate([jittered, _random_boxes(rng, random, size, min_side=10)]),
                np.concatenate([rng.random(on_gt) ** 0.5, rng.random(random) ** 2]),
                np.concatenate([classes, rng.integers(0, num_classes, random)]),
            )
        )
    return detections, ground_truths


def _random_boxes(
    rng: np.random.Generator, n: int, size: np.ndarray, min_side: float
) -> np.ndarray:
    """``n`` boxes ``x1, y1, x2, y2`` inside an image of ``size`` (width, height), sides at
    least ``min_side`` pixels."""
    low = rng.random((n, 2)) * (size - min_side)
    high = low + min_side - 1 + rng.random((n, 2)) * (size - min_side - low)
    return np.concatenate([low, high], axis=1)


def measure_evaluation(
    num_images: int,
    num_classes: int,
    detections_per_image: int,
    subset: int,
    repeats: int = 3,
    seed: int = 0,
) -> EvaluationResult:
    """Time both AP computations (see the module docstring) and compare them on the subset."""
    detections, ground_truths = synthetic_records(
        num_images, num_classes, detections_per_image, seed
    )
    wsl_seconds = float(
        np.median(
            [
                _timed(voc_detection_ap, detections, ground_truths, num_classes)[1]
                for _ in range(repeats)
            ]
        )
    )
    sub_dets, sub_gts = detections[:subset], ground_truths[:subset]
    wsl_aps, wsl_subset_seconds = _timed(voc_detection_ap, sub_dets, sub_gts, num_classes)
    plain_aps, plain_subset_seconds = _timed(plain_voc07_ap, sub_dets, sub_gts, num_classes)
    wsl = np.array([r.ap for r in wsl_aps])
    plain = np.array(plain_aps)
    if not np.array_equal(np.isnan(wsl), np.isnan(plain)):
        raise AssertionError(
            f"the two AP computations disagree on which classes have GT: {wsl} {plain}"
        )
    difference = np.abs(wsl - plain)[~np.isnan(wsl)]
    return EvaluationResult(
        images=num_images,
        detections=num_images * detections_per_image,
        wsl_seconds=wsl_seconds,
        subset_images=len(sub_dets),
        wsl_subset_seconds=wsl_subset_seconds,
        plain_subset_seconds=plain_subset_seconds,
        max_abs_ap_difference=float(difference.max()) if difference.size else 0.0,
    )


def _timed(function: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``function(*args)`` and the seconds it took."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start
