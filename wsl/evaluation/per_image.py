"""The per-image evaluators, their gathering across processes, class means (the records they
collect are :mod:`wsl.structures.detections`'s).

Every evaluator here follows detectron2's ``reset / process / evaluate``: ``process`` keeps
one record per image id, ``evaluate`` gathers the records of every rank (when
``torch.distributed`` is initialized) and computes the metric on all of them, on every rank.
A ``DistributedSampler`` pads the last batch with images another rank already saw; only the
first record of an image id is kept. Images are then ordered by id, so the result (whose
only order dependence is how exact score ties between images are broken) is the same for
any number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.distributed as dist

from wsl.structures.detections import ArrayLike, ImageDetections, ImageGroundTruth


def gather_by_image(records: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Every rank's ``(image_id, record)`` pairs, first one per id kept, sorted by id."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, list(records))
        records = [pair for part in parts for pair in part]
    first: dict[str, Any] = {}
    for image_id, record in records:
        first.setdefault(image_id, record)
    return sorted(first.items(), key=lambda pair: pair[0])


class PerImageEvaluator:
    """Base of the evaluators: keeps one record per image, gathers them for ``evaluate``."""

    def __init__(self) -> None:
        self._records: list[tuple[str, Any]] = []

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._records = []

    def _keep(self, image_ids: Sequence[str], records: Sequence[Any]) -> None:
        if len(image_ids) != len(records):
            raise ValueError(f"{len(image_ids)} image ids for {len(records)} images")
        self._records.extend(zip(image_ids, records, strict=True))

    def _gathered(self) -> list[Any]:
        return [record for _, record in gather_by_image(self._records)]


class DetectionEvaluator(PerImageEvaluator):
    """Base of the evaluators fed each image's detections and ground truth."""

    def process(
        self,
        image_ids: Sequence[str],
        detections: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
        ground_truths: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
    ) -> None:
        """Add images: detections ``(boxes, scores, classes)``, GT ``(boxes, classes,
        difficult)``, boxes 0-based inclusive in the image as stored on disk."""
        if len(detections) != len(ground_truths):
            raise ValueError(f"{len(detections)} images of detections, {len(ground_truths)} of GT")
        records = [
            (ImageDetections.of(*d), ImageGroundTruth.of(*g))
            for d, g in zip(detections, ground_truths, strict=True)
        ]
        self._keep(image_ids, records)

    def gathered_detections(self) -> tuple[list[ImageDetections], list[ImageGroundTruth]]:
        records = self._gathered()
        return [d for d, _ in records], [g for _, g in records]


def check_classes(classes: np.ndarray, num_classes: int, what: str) -> None:
    """Raise if a class index is outside ``[0, num_classes)``."""
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"{what} class indices must be in [0, {num_classes}), got {classes}")


def defined_mean(per_class: Sequence[float] | np.ndarray) -> float:
    """Mean over the classes whose value is defined (not NaN); NaN if none is."""
    values = np.asarray(per_class, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def fraction_per_class(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """``counts / totals`` per class (float64), NaN where ``totals`` is 0."""
    return np.divide(counts, totals, out=np.full(len(totals), np.nan), where=totals > 0)
