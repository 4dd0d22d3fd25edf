"""``pr_curves.json``: each class's precision-recall curve of a test, thinned, for the
report (written by :class:`~wsl.callbacks.result_files.ResultFiles`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from wsl.runtime.atomic import atomic_path
from wsl.runtime.json_safe import json_safe

PR_CURVES_NAME = "pr_curves.json"
# Most points kept per class in pr_curves.json (the curve has one per detection).
MAX_CURVE_POINTS = 500


class PRCurve(Protocol):
    """A class's detection AP and precision/recall curve (``voc_detection.ClassAP`` is one)."""

    @property
    def ap(self) -> float: ...

    @property
    def precision(self) -> np.ndarray: ...

    @property
    def recall(self) -> np.ndarray: ...


def curve_points(precision: np.ndarray, recall: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (ascending) of at most ``max_points`` points that keep a curve's shape.

    The recall axis is cut into ``max_points // 4`` bins (by rank when recall is undefined);
    each bin keeps its first and last point and its highest and lowest precision, so the
    precision envelope and the saw teeth survive.
    """
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    count = len(precision)
    if count <= max_points:
        return np.arange(count)
    position = recall if np.isfinite(recall).all() else np.arange(count) / count
    num_bins = max_points // 4
    bins = np.minimum((position * num_bins).astype(int), num_bins - 1)

    def first_per_bin(order: np.ndarray) -> np.ndarray:
        return order[np.unique(bins[order], return_index=True)[1]]

    order = np.arange(count)
    kept = (
        first_per_bin(order),
        first_per_bin(order[::-1]),
        first_per_bin(np.lexsort((-precision, bins))),
        first_per_bin(np.lexsort((precision, bins))),
    )
    return np.unique(np.concatenate(kept))


def write_pr_curves(
    output_dir: str | Path, curves: Mapping[str, PRCurve], max_points: int = MAX_CURVE_POINTS
) -> Path:
    """Write ``pr_curves.json``: ``{class: {"precision": [...], "recall": [...], "ap": AP}}``.

    Curves longer than ``max_points`` are thinned with ``curve_points``; ``ap`` is the exact
    AP of the full curve. NaN (a class without positives) is written as ``null``. Atomic.
    """
    payload = {}
    for name, curve in curves.items():
        precision, recall = np.asarray(curve.precision), np.asarray(curve.recall)
        keep = curve_points(precision, recall, max_points)
        payload[name] = {
            "precision": precision[keep].astype(float).tolist(),
            "recall": recall[keep].astype(float).tolist(),
            "ap": float(curve.ap),
        }
    path = Path(output_dir) / PR_CURVES_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(payload)) + "\n")
    return path
