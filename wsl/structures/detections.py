"""The detection and ground-truth records: what a model finds in an image and what is there.

- :class:`Detections`: the one detections record, tensors ``(boxes (K, 4), scores (K,),
  classes (K,))`` with boxes in 0-based inclusive pixels (:mod:`wsl.structures.boxes`), best
  first: what every family finds per image (``predict``, ``step(detect=True)``), what
  ``wsl.predict`` writes and what ``wsl.load(...).detect`` returns.
- :class:`ImageDetections` and :class:`ImageGroundTruth`: one image's detections (the same
  record as numpy arrays, ``ImageDetections.of(*detections)``) and ground truth, as the
  evaluators collect them (:mod:`wsl.evaluation.per_image`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import numpy as np
from torch import Tensor

ArrayLike = Tensor | np.ndarray
Record = TypeVar("Record", "ImageDetections", "ImageGroundTruth")


def to_numpy(values: ArrayLike, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` as a numpy array of ``dtype``, reshaped to ``shape`` (-1: any length)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(shape)


def _same_length(record: Record) -> Record:
    """``record`` itself, after checking that its fields describe the same number of boxes."""
    lengths = {name: len(value) for name, value in zip(record._fields, record, strict=True)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{type(record).__name__} fields differ in length: {lengths}")
    return record


class Detections(NamedTuple):
    """One image's detections, best first (tensors on any device)."""

    boxes: Tensor  # (K, 4) float x1, y1, x2, y2, 0-based inclusive pixels
    scores: Tensor  # (K,)
    classes: Tensor  # (K,) int64 class indices

    def subset(self, keep: Tensor) -> Detections:
        """The detections that ``keep`` (a boolean mask or indices) selects, in its order."""
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])

    def top(self, score_threshold: float, max_boxes: int | None) -> Detections:
        """The detections scoring at least ``score_threshold``, at most ``max_boxes`` of them."""
        return self.subset((self.scores >= score_threshold).nonzero().squeeze(1)[:max_boxes])

    def cpu(self) -> Detections:
        """The same detections on the CPU."""
        return Detections(self.boxes.cpu(), self.scores.cpu(), self.classes.cpu())

    def labels(self, class_names: Sequence[str]) -> list[str]:
        """The class name of each detection."""
        return [class_names[c] for c in self.classes.tolist()]


class ImageDetections(NamedTuple):
    """Detections of one image: boxes ``(K, 4)`` (0-based inclusive), scores, class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, boxes: ArrayLike, scores: ArrayLike, classes: ArrayLike) -> ImageDetections:
        """Convert tensors or arrays; scores keep their precision (float32 -> float64 is exact)."""
        return _same_length(
            cls(
                to_numpy(boxes, np.float64, (-1, 4)),
                to_numpy(scores, np.float64, (-1,)),
                to_numpy(classes, np.int64, (-1,)),
            )
        )

    def top_of_class(self, c: int) -> int | None:
        """The index of the top-scoring detection of class ``c`` (the first one on ties), or
        ``None`` when there is none: the box CorLoc judges, the box pictures draw and the
        refinement benchmark measures."""
        of_class = np.flatnonzero(self.classes == c)
        return int(of_class[np.argmax(self.scores[of_class])]) if of_class.size else None


class ImageGroundTruth(NamedTuple):
    """Ground truth of one image: boxes ``(G, 4)`` (0-based inclusive), classes, difficult."""

    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray

    @classmethod
    def of(cls, boxes: ArrayLike, classes: ArrayLike, difficult: ArrayLike) -> ImageGroundTruth:
        """Convert tensors or arrays."""
        return _same_length(
            cls(
                to_numpy(boxes, np.float64, (-1, 4)),
                to_numpy(classes, np.int64, (-1,)),
                to_numpy(difficult, np.bool_, (-1,)),
            )
        )
