"""What a family that shows its reasoning gives beside one image's detections: its class
probabilities and heatmaps (the Localizer's score maps), for ``wsl.predict``'s pictures and
``detections.json``."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class ClassEvidence(NamedTuple):
    """One image's class evidence, on the CPU."""

    class_scores: Tensor  # (C,) image-level class probabilities
    heatmaps: Tensor  # (C, h, w) class heatmaps in [0, 1]
    predicted: tuple[int, ...] = ()  # the classes taken as present (their heatmaps are drawn)
