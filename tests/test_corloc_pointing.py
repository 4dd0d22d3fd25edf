"""CorLoc and the pointing game against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsl.evaluation.corloc import CorLocEvaluator, corloc
from wsl.evaluation.pointing import PointingGameEvaluator, pointing_game, pointing_hits
from wsl.structures.detections import ImageDetections, ImageGroundTruth

CLASSES = ["cat", "dog", "bird"]


def gt(*rows: tuple[list[float], int, bool]) -> tuple[torch.Tensor, ...]:
    """Ground truth of one image from ``(box, class, difficult)`` rows."""
    boxes = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(-1, 4)
    return boxes, torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])


def det(*rows: tuple[list[float], float, int]) -> tuple[torch.Tensor, ...]:
    """Detections of one image from ``(box, score, class)`` rows."""
    boxes = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(-1, 4)
    return boxes, torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])


GROUND_TRUTH = [
    gt(([0, 0, 9, 9], 0, False), ([50, 50, 59, 59], 1, True)),  # A: cat; a difficult dog
    gt(([0, 0, 9, 9], 0, False)),  # B: cat
    gt(([0, 0, 19, 19], 0, False)),  # C: cat
]
DETECTIONS = [
    det(
        ([100, 100, 110, 110], 0.9, 0),  # A cat: the top box misses (a lower one hits: no help)
        ([0, 0, 9, 9], 0.3, 0),
        ([50, 50, 59, 59], 0.5, 1),  # A dog: on the difficult dog -> correct
    ),
    det(([0, 0, 9, 4], 0.8, 0), ([0, 0, 9, 9], 0.7, 2)),  # B cat: IoU 50/100 exactly -> correct
    det(([0, 0, 19, 19], 0.9, 1)),  # C: no cat detection -> the cat pair is a miss
]
# cat: 3 pairs, 1 correct; dog: 1 pair (difficult only, still counted), 1 correct;
# bird: detected in B but never present -> no pair, NaN. Mean (1/3 + 1) / 2 = 2/3.


def test_corloc_toy_case() -> None:
    mean, per_class = corloc(
        [ImageDetections.of(*d) for d in DETECTIONS],
        [ImageGroundTruth.of(*g) for g in GROUND_TRUTH],
        num_classes=3,
    )
    assert per_class[:2].tolist() == pytest.approx([1 / 3, 1.0])
    assert math.isnan(per_class[2])
    assert mean == pytest.approx(2 / 3)


def test_corloc_evaluator_keeps_the_first_of_duplicate_images() -> None:
    evaluator = CorLocEvaluator(CLASSES)
    evaluator.process(["A", "B"], DETECTIONS[:2], GROUND_TRUTH[:2])
    evaluator.process(["C", "B"], [DETECTIONS[2], det()], [GROUND_TRUTH[2], GROUND_TRUTH[1]])
    result = evaluator.evaluate()
    assert result["corloc_per_class"]["cat"] == pytest.approx(1 / 3)
    assert result["CorLoc"] == pytest.approx(2 / 3)
    evaluator.reset()
    assert math.isnan(evaluator.evaluate()["CorLoc"])


def test_pointing_hits_within_the_tolerance_disc() -> None:
    box = torch.tensor([[100.0, 100.0, 199.0, 199.0]])
    points = torch.tensor(
        [
            [150.0, 150.0],  # inside
            [82.0, 150.0],  # 18 px left of the box: on the tolerance, a hit
            [81.9, 150.0],  # 18.1 px: a miss
            [88.0, 88.0],  # diagonal: sqrt(12^2 + 12^2) = 17.0 px, a hit
            [87.0, 87.0],  # sqrt(13^2 + 13^2) = 18.4 px: a miss (a square margin would hit)
            [199.0, 217.0],  # 18 px below the bottom-right pixel: a hit
        ]
    )
    hits = pointing_hits(points, [box] * len(points), tolerance=18.0)
    assert hits.tolist() == [True, True, False, True, False, True]


def test_pointing_hits_any_box_and_misses_without_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [100.0, 0.0, 109.0, 9.0]])
    points = torch.tensor([[105.0, 5.0], [55.0, 5.0], [5.0, 5.0]])
    hits = pointing_hits(points, [boxes, boxes, torch.empty(0, 4)], tolerance=0.0)
    assert hits.tolist() == [True, False, False]
    assert pointing_hits(torch.empty(0, 2), []).tolist() == []


def test_pointing_game_toy_case() -> None:
    ground_truth = [
        gt(([100, 100, 199, 199], 0, False), ([0, 0, 9, 9], 1, True)),
        gt(([0, 0, 9, 9], 0, False)),
    ]
    points = [
        # cat inside its box -> hit; dog 21 px off both edges: 29.7 px -> miss; bird absent
        torch.tensor([[150.0, 150.0], [30.0, 30.0], [0.0, 0.0]]),
        torch.tensor([[300.0, 300.0], [0.0, 0.0], [0.0, 0.0]]),  # cat far away -> miss
    ]
    mean, per_class = pointing_game(
        [p.numpy() for p in points], [ImageGroundTruth.of(*g) for g in ground_truth], 3
    )
    assert per_class[:2].tolist() == [0.5, 0.0] and math.isnan(per_class[2])
    assert mean == pytest.approx(0.25)

    evaluator = PointingGameEvaluator(CLASSES, tolerance=18.0)
    evaluator.process(["A", "B"], points, ground_truth)
    result = evaluator.evaluate()
    assert result["pointing"] == pytest.approx(0.25)
    assert result["pointing_per_class"]["cat"] == 0.5
    # a larger tolerance reaches the dog: 29.7 px <= 30
    evaluator.tolerance = 30.0
    assert evaluator.evaluate()["pointing_per_class"]["dog"] == 1.0
    with pytest.raises(ValueError):
        evaluator.process(["C"], [np.zeros((2, 2))], ground_truth[:1])  # 2 classes, not 3
