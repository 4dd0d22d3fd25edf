"""COCO detection metrics (AP, AP50, AP75, APs, APm, APl) of a model's test detections,
computed by pycocotools itself (``pycocotools/cocoeval.py``, ``COCOeval(gt, dt, "bbox")``:
``evaluate``, ``accumulate``, ``summarize``; ``stats[0:6]``), not reimplemented.

- Ground truth: a COCO-format dataset dict (``images``, ``annotations``, ``categories``), as
  ``pycocotools.coco.COCO.dataset`` holds it; it is copied once, so nothing here (nor
  ``COCOeval._prepare``, which writes each annotation's ``ignore``) changes the caller's dict.
  Crowd annotations (``iscrowd: 1``) and each annotation's own ``area`` (the size ranges) are
  pycocotools'.
- Boxes: this project's boxes are float ``x1, y1, x2, y2`` in 0-based inclusive pixels; a COCO
  ``bbox`` is ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` (:func:`~wsl.structures.boxes.coco_bbox`).
  Scores keep their full float64 precision.
- At most ``max_detections`` (100) detections per image, across its classes, the highest
  scores: detectron2's ``DETECTIONS_PER_IMAGE`` and the ``maxDets=100`` of ``stats[0:6]``.
- Only the processed images are evaluated (``params.imgIds``); a size range without ground
  truth (pycocotools' -1) is NaN; no detection at all gives AP 0 wherever there is ground truth.

pycocotools' printing (index building, ``loadRes``, the summary table) is captured and the
summary is logged at INFO.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from wsl.evaluation.per_image import PerImageEvaluator, check_classes, gather_by_image
from wsl.runtime.atomic import atomic_path
from wsl.structures.boxes import coco_bbox
from wsl.structures.detections import ArrayLike, ImageDetections

log = logging.getLogger(__name__)

COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _coco(dataset: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` holding ``dataset`` (not copied), its index built silently."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class COCODetectionEvaluator(PerImageEvaluator):
    """COCO bbox AP of the processed images of every process (detectron2 style).

    ``ground_truth``: a COCO-format dataset dict (keys ``images``, ``annotations``,
    ``categories``) as pycocotools' ``COCO.dataset`` holds it; ``image_ids``: this project's
    image id (str) -> the COCO image id (int) of ``ground_truth``; ``category_ids``: the COCO
    category id of each class index (class ``c`` -> ``category_ids[c]``).
    """

    def __init__(
        self,
        ground_truth: dict,
        image_ids: Mapping[str, int],
        category_ids: Sequence[int],
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        if max_detections < 10:
            raise ValueError(f"max_detections must be at least 10, got {max_detections}")
        self.image_ids = {str(k): int(v) for k, v in image_ids.items()}
        self.category_ids = [int(c) for c in category_ids]
        self.max_detections = max_detections
        self._ground_truth = _coco(copy.deepcopy(ground_truth))
        self._check_ids()

    def _check_ids(self) -> None:
        """Raise unless the image and category ids are the ground truth's, one per image or
        class, and no annotation has id 0 (``COCOeval`` records a match as the annotation's
        id, so a match with annotation 0 would count as no match)."""
        coco_images = set(self._ground_truth.getImgIds())
        coco_categories = set(self._ground_truth.getCatIds())
        unknown_images = sorted(set(self.image_ids.values()) - coco_images)
        if unknown_images:
            raise ValueError(f"image ids not in the ground truth's images: {unknown_images}")
        if len(set(self.image_ids.values())) != len(self.image_ids):
            raise ValueError("two image ids map to the same COCO image id")
        unknown_categories = sorted(set(self.category_ids) - coco_categories)
        if unknown_categories:
            raise ValueError(f"category ids not in the ground truth: {unknown_categories}")
        if len(set(self.category_ids)) != len(self.category_ids):
            raise ValueError(f"a category id is given to two classes: {self.category_ids}")
        if 0 in self._ground_truth.anns:
            raise ValueError("a ground-truth annotation has id 0 (COCOeval cannot match it)")

    def process(
        self,
        image_ids: Sequence[str],
        detections: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
    ) -> None:
        """Add images: their detections ``(boxes, scores, classes)``, boxes 0-based inclusive
        in the image as stored on disk, class indices into ``category_ids``."""
        unknown = [i for i in image_ids if i not in self.image_ids]
        if unknown:
            raise ValueError(f"images without a COCO image id: {unknown}")
        if len(image_ids) != len(detections):
            raise ValueError(f"{len(image_ids)} image ids for {len(detections)} images")
        records = [ImageDetections.of(*d) for d in detections]
        for image_id, record in zip(image_ids, records, strict=True):
            check_classes(record.classes, len(self.category_ids), "detection")
            if not (np.isfinite(record.boxes).all() and np.isfinite(record.scores).all()):
                raise ValueError(f"image {image_id!r}: a box or score is not finite")
        self._keep(image_ids, records)

    def _processed(self) -> list[tuple[int, ImageDetections]]:
        """Every rank's images, first record per image id, in id order, as COCO image ids."""
        return [(self.image_ids[i], d) for i, d in gather_by_image(self._records)]

    def _results(self, processed: Sequence[tuple[int, ImageDetections]]) -> list[dict]:
        results = []
        for coco_id, dets in processed:
            keep = np.argsort(-dets.scores, kind="stable")[: self.max_detections]
            for bbox, score, c in zip(
                coco_bbox(dets.boxes[keep]).tolist(),
                dets.scores[keep].tolist(),
                dets.classes[keep].tolist(),
                strict=True,
            ):
                results.append(
                    {
                        "image_id": coco_id,
                        "category_id": self.category_ids[c],
                        "bbox": bbox,
                        "score": score,
                    }
                )
        return results

    def results(self) -> list[dict]:
        """The COCO results entries (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
        ``score``): images in id order, each image's ``max_detections`` highest-scoring
        detections, best first (equal scores in the order given)."""
        return self._results(self._processed())

    def evaluate(self) -> dict[str, float]:
        """``{metric: value}`` for :data:`COCO_METRICS` (``COCOeval.stats[0:6]``, the same on
        every rank), on the processed images only; NaN where there is no ground truth (of
        that size), or when no image was processed."""
        processed = self._processed()
        if not processed:
            log.warning("COCO evaluation: no image was processed")
            return dict.fromkeys(COCO_METRICS, math.nan)
        results = self._results(processed)
        gt = self._ground_truth
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            if results:
                dt = gt.loadRes(results)  # loadRes adds fields to the entries it is given
            else:  # loadRes reads results[0]: no detection at all is an empty results set
                dt = _coco(
                    {
                        "images": list(gt.dataset["images"]),
                        "categories": copy.deepcopy(gt.dataset["categories"]),
                        "annotations": [],
                    }
                )
            evaluation = COCOeval(gt, dt, "bbox")
            evaluation.params.imgIds = sorted(coco_id for coco_id, _ in processed)
            evaluation.params.maxDets = [1, 10, self.max_detections]
            evaluation.evaluate()
            evaluation.accumulate()
            summary = io.StringIO()
            with contextlib.redirect_stdout(summary):
                evaluation.summarize()
        log.info(
            "COCO bbox evaluation of %d images:\n%s", len(processed), summary.getvalue().rstrip()
        )
        stats = [float(v) for v in evaluation.stats[: len(COCO_METRICS)]]
        return {
            name: math.nan if v == -1 else v for name, v in zip(COCO_METRICS, stats, strict=True)
        }


def write_coco_json(path: str | Path, results: list[dict] | dict[str, Any]) -> Path:
    """Write COCO-format JSON atomically: the results of :meth:`COCODetectionEvaluator.results`,
    or a ground-truth dataset dict; floats as Python's shortest repr that reads back the same (never
    rounded). A NaN or infinite value raises ``ValueError`` (not JSON)."""
    path = Path(path)
    text = json.dumps(results, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path
