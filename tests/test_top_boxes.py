"""The top-box extent diagnostic of the refinement benchmark, on hand-made records."""

from __future__ import annotations

import numpy as np
import pytest

from wsl.benchmarks.top_boxes import top_box_area_ratio
from wsl.structures.detections import ImageDetections, ImageGroundTruth

GROUND_TRUTHS = [  # two images; classes a = 0, b = 1; 0-based inclusive boxes
    ImageGroundTruth.of([[0, 0, 9, 9], [20, 20, 39, 39]], [0, 1], [False, False]),
    ImageGroundTruth.of([[0, 0, 19, 19], [50, 50, 59, 59]], [0, 0], [False, True]),
]


def detections(with_b: bool = True) -> list[ImageDetections]:
    first = [([0, 0, 4, 9], 0.9, 0), ([0, 0, 19, 19], 0.1, 0)]  # a: the 0.9 box is the top
    first += [([20, 20, 39, 39], 0.7, 1)] if with_b else []
    second = [([50, 50, 59, 69], 0.8, 0)]  # a: matched to the box it overlaps, not the first
    return [
        ImageDetections.of(
            [box for box, _, _ in dets], [s for _, s, _ in dets], [c for _, _, c in dets]
        )
        for dets in (first, second)
    ]


def test_top_box_area_ratio_is_the_median_over_present_pairs() -> None:
    # ratios: 50 / 100 (image 1, a), 200 / 100 (image 2, a: its difficult GT counts),
    # 400 / 400 (image 1, b) -> median 1.0
    assert top_box_area_ratio(detections(), GROUND_TRUTHS) == pytest.approx(1.0)
    # b has no detection: its pair is left out
    assert top_box_area_ratio(detections(with_b=False), GROUND_TRUTHS) == pytest.approx(1.25)


def test_no_pair_with_a_detection_gives_nan() -> None:
    empty = [ImageDetections.of(np.zeros((0, 4)), [], []) for _ in GROUND_TRUTHS]
    assert np.isnan(top_box_area_ratio(empty, GROUND_TRUTHS))
