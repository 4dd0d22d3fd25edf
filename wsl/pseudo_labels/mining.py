"""Pseudo boxes for the second stage: one image's detections and its image-level labels in, the
boxes a fully supervised detector is then trained on out.

Each rule is a pure function of one image's detections (:class:`~wsl.structures.detections.
Detections` or :class:`~wsl.structures.detections.ImageDetections`, from any family's ``detect``)
and the image's positive classes (the indices its image-level labels mark present). Both rules
first drop every detection of a class absent from the labels, so such a class never gets a box.

- :func:`top1`, OICR's protocol (ppengtang/oicr ``lib/fast_rcnn/test_train.py`` lines 243-251):
  for each positive class, its top-scoring box.
- :func:`pgf`, SoS-WSOD's pseudo ground-truth filter (suilin0432/SoS-WSOD ``tools/pgf.py``):
  per positive class the top-1 box, plus every other box scoring at least ``score_threshold``
  (0.2), minus every box contained (at least ``containment_threshold``, 0.85, of its area) in
  another box of its class.

:class:`PseudoLabelRule` names the rule and its settings in plain fields, so a Hydra config can
build it; :data:`RULES` lists the names.

Detections are thresholded, NMS-ed and capped by ``detect``, where OICR's argmax ran over every
proposal's raw score, so a positive class may have no detection at all: it then gets no pseudo
box (nothing is invented), and :attr:`PseudoLabels.missing` names it so a caller can count it
(:func:`summary`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from wsl.runtime.settings import SettingError
from wsl.structures.detections import Detections, ImageDetections

SCORE_THRESHOLD = 0.2  # tools/pgf.py line 19, --t-keep
CONTAINMENT_THRESHOLD = 0.85  # tools/pgf.py line 18, --t-con
CONTAINMENT_EPS = 1e-6  # tools/pgf.py line 219: area_c / (area_a + 1e-6)

# The VOC classes tools/pgf.py exempts from the containment step by default (line 97:
# diff_classes = [4, 5, 6, 8, 9, 15, 16], skipped at line 257 unless --use-diff; the README's
# VOC2007 command, line 171, does not pass --use-diff, its COCO command, line 173, does). Classes
# that often come many to an image, where a box inside another may be a second object.
SOS_WSOD_VOC_EXEMPT = ("bottle", "bus", "car", "chair", "cow", "pottedplant", "sheep")


class PseudoLabels(NamedTuple):
    """One image's pseudo boxes, chosen from its detections."""

    labels: ImageDetections  # the chosen detections, in the detections' order
    kept: np.ndarray  # (P,) int64: their indices in the detections, ascending
    missing: tuple[int, ...]  # positive classes left without a pseudo box, ascending


def _as_numpy(detections: Detections | ImageDetections) -> ImageDetections:
    found = ImageDetections.of(*detections)
    if not np.isfinite(found.scores).all() or not np.isfinite(found.boxes).all():
        raise ValueError("detections with a non-finite score or box coordinate")
    return found


def _positives(positive_classes: Iterable[int]) -> list[int]:
    """The positive classes as ascending, distinct ints (a list, tuple, array or tensor)."""
    classes = []
    for c in np.asarray(positive_classes).reshape(-1).tolist():
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ValueError(f"positive classes must be class indices >= 0, got {c!r}")
        classes.append(c)
    return sorted(set(classes))


def _top_of_class(found: ImageDetections, c: int) -> int | None:
    # The highest score, the first in the record on ties (np.argmax), as
    # ImageDetections.top_of_class. OICR: np.argmax over the proposals (test_train.py line 246);
    # pgf.py: the class's first detection in the results file (lines 234-237), which is its
    # best because detectron2 writes an image's detections in batched_nms order, best first
    # (uwsod/projects/WSL/wsl/modeling/roi_heads/fast_rcnn_oicr.py line 137).
    return found.top_of_class(c)


def _result(found: ImageDetections, kept: Iterable[int], positives: list[int]) -> PseudoLabels:
    kept = np.array(sorted(kept), dtype=np.int64)
    labels = ImageDetections(found.boxes[kept], found.scores[kept], found.classes[kept])
    have = set(labels.classes.tolist())
    return PseudoLabels(labels, kept, tuple(c for c in positives if c not in have))


def top1(detections: Detections | ImageDetections, positive_classes: Iterable[int]) -> PseudoLabels:
    """OICR's pseudo ground truth: for each positive class, its top-scoring detection.

    Follows ppengtang/oicr ``lib/fast_rcnn/test_train.py`` lines 243-251: ``tmp_idx`` the image's
    positive classes, ``idx_real = np.argmax(scores[:, c])`` one box per class (the first on
    ties); classes absent from the labels get nothing. One box may serve two classes (each
    class's argmax is taken on its own, nothing is zeroed), here as there. Departure: OICR
    takes the argmax over every proposal, so a class always gets a box; here the detections are
    thresholded and NMS-ed, so a positive class without any detection gets no box and is
    listed in :attr:`PseudoLabels.missing`.
    """
    found, positives = _as_numpy(detections), _positives(positive_classes)
    kept = [_top_of_class(found, c) for c in positives]
    return _result(found, [i for i in kept if i is not None], positives)


def containment(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """How much of each ``inner`` box lies inside the ``outer`` box it is paired with:
    intersection over the inner box's area, for inclusive boxes ``(..., 4)`` broadcast against
    each other (``containment(a[:, None], a[None])`` is the matrix).

    tools/pgf.py ``contain_cal(a, b)`` (lines 209-219): ``area_c / (area_a + 1e-6)``, each side
    of the intersection clamped at 0, on continuous boxes; with inclusive pixels a side is
    ``x2 - x1 + 1`` (the +1 convention of :func:`~wsl.structures.boxes.voc_iou`), the same
    quantity. The 1e-6 is kept, so a box exactly 0.85 inside another is not "contained" at 0.85.
    """
    a, b = np.asarray(inner, dtype=np.float64), np.asarray(outer, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    area = np.clip(a[..., 2] - a[..., 0] + 1, 0, None) * np.clip(a[..., 3] - a[..., 1] + 1, 0, None)
    return iw * ih / (area + CONTAINMENT_EPS)


def pgf(
    detections: Detections | ImageDetections,
    positive_classes: Iterable[int],
    score_threshold: float = SCORE_THRESHOLD,
    containment_threshold: float = CONTAINMENT_THRESHOLD,
    exempt_classes: Iterable[int] = (),
) -> PseudoLabels:
    """SoS-WSOD's pseudo ground-truth filter (PGF) on one image.

    Follows suilin0432/SoS-WSOD ``tools/pgf.py`` (commit 12d0b3b), its three steps in order:

    1. ``class_filter`` (lines 273-290, called at line 94): drop the detections of classes
       absent from the image labels.
    2. lines 230-241: of each class, keep its top-1 detection whatever its score, and every
       other one scoring ``>= score_threshold`` (``pop`` where ``score < t_keep``).
    3. lines 248-264: drop every kept box of a class that is ``>= containment_threshold``
       contained (:func:`containment`, intersection over *its own* area) in another kept box of
       that class, unless the class is in ``exempt_classes`` (line 257). All pairs are judged on
       the boxes step 2 kept (a dropped box still contains others, ``save`` is only read after
       the loops), the top-1 is not protected (a top-1 inside a larger box of its class scoring
       ``>= score_threshold`` goes), and two boxes each inside the other both go. So a positive
       class can lose every box; it is then listed in :attr:`PseudoLabels.missing`.

    Departures, each because the authors' output differs from what the paper and their COCO
    path describe, not by choice:

    - Boxes: their VOC results file stores ``bbox`` as ``[xmin + 1, ymin + 1, xmax, ymax]``
      (``uwsod/detectron2/evaluation/pascal_voc_evaluation.py`` lines 64-70 and 102-111) and
      their second stage reads the pseudo-labels back as XYXY
      (``detectron2/detectron2/data/datasets/pascal_voc.py`` lines 143-149), but
      ``contain_cal`` reads ``bbox`` as ``[x, y, w, h]`` (lines 212-215), so on VOC it measured
      boxes ``[x1, y1, x1 + x2, y1 + y2]``. Here the real boxes, as their COCO path measures
      them (``instances_to_coco_json`` writes XYWH: ``uwsod/detectron2/evaluation/
      coco_evaluation.py`` line 332).
    - Scores: that VOC file rounds scores to 3 decimals (``{score:.3f}``, line 70), so there
      0.1996 passed ``>= 0.2``; here scores keep full precision (``shared/DESIGN.md``).
    - Top-1 of a class: the best detection, the first in the record on ties, which is the
      first one in their file (an image's detections are written best first), without
      depending on the order of the record.
    - Exempt classes: they are given by the caller (:class:`PseudoLabelRule`,
      ``containment_exempt``), none by default (the issue's rule, their COCO command);
      :data:`SOS_WSOD_VOC_EXEMPT` names the seven of their VOC command.
    """
    found, positives = _as_numpy(detections), _positives(positive_classes)
    exempt = set(_positives(exempt_classes))
    kept = []
    for c in positives:
        top = _top_of_class(found, c)
        if top is None:
            continue
        of_class = np.flatnonzero(found.classes == c)
        survivors = of_class[(of_class == top) | (found.scores[of_class] >= score_threshold)]
        if c not in exempt and len(survivors) > 1:
            boxes = found.boxes[survivors]
            inside = containment(boxes[:, None], boxes[None]) >= containment_threshold
            np.fill_diagonal(inside, False)  # b_i == b_j is skipped (line 256)
            survivors = survivors[~inside.any(axis=1)]
        kept += survivors.tolist()
    return _result(found, kept, positives)


RULES = ("top1", "pgf")


@dataclass(frozen=True)
class PseudoLabelRule:
    """Which rule turns an image's detections into pseudo boxes, with its settings.

    ``rule``: ``"top1"`` (:func:`top1`) or ``"pgf"`` (:func:`pgf`); ``score_threshold``,
    ``containment_threshold`` and ``containment_exempt`` (class names) are :func:`pgf`'s and
    ignored by ``top1``. ``containment_exempt`` set to :data:`SOS_WSOD_VOC_EXEMPT` gives the
    authors' VOC2007 command (with the departures :func:`pgf` lists).
    """

    rule: str = "top1"
    score_threshold: float = SCORE_THRESHOLD
    containment_threshold: float = CONTAINMENT_THRESHOLD
    containment_exempt: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise SettingError(
                f"pseudo-label rule {self.rule!r} is not valid; choose one of {RULES}"
            )
        threshold = self.score_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise SettingError(f"pseudo-label score_threshold={threshold!r} is not a number")
        if not math.isfinite(threshold):
            raise SettingError(f"pseudo-label score_threshold={threshold!r} is not finite")
        threshold = self.containment_threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):
            raise SettingError(
                f"pseudo-label containment_threshold={threshold!r} is not allowed: it must be a "
                f"number in (0, 1] (the share of a box's area inside another box)"
            )
        exempt = self.containment_exempt
        if isinstance(exempt, str) or not all(isinstance(name, str) for name in exempt):
            raise SettingError(
                f"pseudo-label containment_exempt={exempt!r} must be a list of class names"
            )
        object.__setattr__(self, "containment_exempt", tuple(exempt))  # a Hydra ListConfig

    def mine(
        self,
        detections: Detections | ImageDetections,
        positive_classes: Iterable[int],
        class_names: Sequence[str],
    ) -> PseudoLabels:
        """This rule's pseudo boxes of one image; ``class_names`` resolves the exempt names."""
        if self.rule == "top1":
            return top1(detections, positive_classes)
        unknown = [name for name in self.containment_exempt if name not in class_names]
        if unknown:
            raise SettingError(
                f"pseudo-label containment_exempt names classes {unknown} that are not in the "
                f"class list ({', '.join(class_names)})"
            )
        exempt = [class_names.index(name) for name in self.containment_exempt]
        return pgf(
            detections,
            positive_classes,
            self.score_threshold,
            self.containment_threshold,
            exempt,
        )


def summary(results: Iterable[PseudoLabels]) -> dict[str, int]:
    """Counts over images: how many images, pseudo boxes, and positive classes left without a
    box (``missing``: no detection of the class, or PGF dropped all of them)."""
    images = boxes = missing = 0
    for result in results:
        images += 1
        boxes += len(result.kept)
        missing += len(result.missing)
    return {"images": images, "pseudo_boxes": boxes, "missing_classes": missing}
