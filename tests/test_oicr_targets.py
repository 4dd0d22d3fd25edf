"""OICR's pseudo labels on hand-computed cases (IoU with the +1 convention).

A 10x10 box ``[0, 0, 9, 9]`` has area 100; ``[0, 0, 9, k]`` overlaps it by ``10 (k + 1)`` pixels,
so its IoU with it is ``(k + 1) / 10``: k = 4 → 0.5 (foreground), 3 → 0.4 (background),
0 → 0.1 (background, kept), and ``[0, 0, 8, 0]`` → 0.09 (ignored).
"""

from __future__ import annotations

import pytest
import torch

from wsl.pseudo_labels.oicr import oicr_targets

SEED = [0, 0, 9, 9]
BOXES = torch.tensor(
    [SEED, [0, 0, 9, 4], [0, 0, 9, 3], [0, 0, 9, 0], [0, 0, 8, 0], [50, 50, 59, 59]],
    dtype=torch.float32,
)


def test_one_class_seed_foreground_background_and_ignored() -> None:
    scores = torch.tensor([[0.7, 0.1], [0.5, 0.1], [0.4, 0.1], [0.3, 0.1], [0.2, 0.1], [0.1, 0.9]])
    t = oicr_targets(BOXES, scores, torch.tensor([1.0, 0.0]))  # class 1 absent: its 0.9 unused
    assert t.labels.tolist() == [1, 1, 0, 0, 0, 0]
    assert t.weights.tolist() == pytest.approx([0.7, 0.7, 0.7, 0.7, 0.0, 0.0])
    assert t.clusters.tolist() == [0, 0, -1, -1, -1, -1]
    assert t.centre_boxes.tolist() == [SEED]
    assert t.centre_labels.tolist() == [1]
    assert t.centre_scores.tolist() == pytest.approx([0.7])


def test_caffe_layer_keeps_low_overlap_background() -> None:
    """``bg_threshold=0``: ppengtang/oicr's layer, which ignores nothing."""
    scores = torch.tensor([[0.7], [0.5], [0.4], [0.3], [0.2], [0.1]])
    t = oicr_targets(BOXES, scores, torch.tensor([1.0]), bg_threshold=0.0)
    assert t.labels.tolist() == [1, 1, 0, 0, 0, 0]
    assert t.weights.tolist() == pytest.approx([0.7] * 6)


def test_two_classes_each_seed_labels_its_neighbours() -> None:
    boxes = torch.cat([BOXES, torch.tensor([[50.0, 50, 59, 54]])])  # IoU 0.5 with box 5
    scores = torch.tensor(
        [[0.7, 0.1], [0.5, 0.1], [0.4, 0.1], [0.3, 0.1], [0.2, 0.1], [0.1, 0.6], [0.1, 0.2]]
    )
    t = oicr_targets(boxes, scores, torch.tensor([1.0, 1.0]))
    assert t.labels.tolist() == [1, 1, 0, 0, 0, 2, 2]
    assert t.weights.tolist() == pytest.approx([0.7, 0.7, 0.7, 0.7, 0.0, 0.6, 0.6])
    assert t.clusters.tolist() == [0, 0, -1, -1, -1, 1, 1]
    assert t.centre_labels.tolist() == [1, 2]


def test_proposal_claimed_by_two_seeds_goes_to_the_closer_one() -> None:
    """Seeds ``[0,0,9,9]`` (class 0) and ``[0,5,9,14]`` (class 1). ``[0,2,9,11]`` overlaps them
    by 80/120 and 70/130, both ≥ 0.5: the first (larger IoU) wins. ``[0,2,9,11]`` against
    ``[0,4,9,13]`` instead: 80/120 each, a tie, which the first seed (class order) wins."""
    boxes = torch.tensor([[0.0, 0, 9, 9], [0, 5, 9, 14], [0, 2, 9, 11]])
    scores = torch.tensor([[0.8, 0.1], [0.1, 0.6], [0.3, 0.3]])
    t = oicr_targets(boxes, scores, torch.tensor([1.0, 1.0]))
    assert t.labels.tolist() == [1, 2, 1]
    assert t.weights.tolist() == pytest.approx([0.8, 0.6, 0.8])

    # the tie: the class-1 seed is now the better match for nothing, the first seed wins
    boxes[1] = torch.tensor([0.0, 4, 9, 13])
    scores = torch.tensor([[0.1, 0.6], [0.8, 0.1], [0.3, 0.3]])  # class 0 seeds box 1
    t = oicr_targets(boxes, scores, torch.tensor([1.0, 1.0]))
    assert t.centre_boxes.tolist() == [[0, 4, 9, 13], [0, 0, 9, 9]]
    assert t.labels.tolist() == [2, 1, 1]  # box 2 ties: seed 0 (class 0, label 1) wins


def test_one_proposal_seeds_one_class_only() -> None:
    """Box 0 scores highest for both classes; class 0 (first) takes it, class 1 the next best,
    as ``cls_prob[max_index, :] = 0`` does. Equal scores: the first proposal (np.argmax)."""
    boxes = torch.tensor([[0.0, 0, 9, 9], [100, 100, 109, 109], [200, 200, 209, 209]])
    scores = torch.tensor([[0.9, 0.9], [0.1, 0.4], [0.1, 0.4]])
    t = oicr_targets(boxes, scores, torch.tensor([1.0, 1.0]))
    assert t.centre_boxes.tolist() == [[0, 0, 9, 9], [100, 100, 109, 109]]
    assert t.centre_scores.tolist() == pytest.approx([0.9, 0.4])
    assert t.labels.tolist() == [1, 2, 0]


def test_nothing_above_the_overlap_threshold_leaves_only_the_seed() -> None:
    boxes = torch.tensor([[0.0, 0, 9, 9], [0, 0, 9, 3], [0, 6, 9, 15], [30, 30, 39, 39]])
    scores = torch.tensor([[0.2], [0.9], [0.3], [0.1]])  # box 1 is the seed
    t = oicr_targets(boxes, scores, torch.tensor([1.0]))
    assert t.labels.tolist() == [0, 1, 0, 0]
    # box 0: IoU 0.4, kept as background; box 2 is disjoint from the seed, box 3 too: ignored
    assert t.weights.tolist() == pytest.approx([0.9, 0.9, 0.0, 0.0])
    assert t.clusters.tolist() == [-1, 0, -1, -1]


def test_scores_are_clamped_like_the_authors() -> None:
    """A seed scoring 0 weighs 1e-9 (the clamp of ``OICR``), not 0."""
    t = oicr_targets(BOXES[:2], torch.tensor([[0.0], [0.0]]), torch.tensor([1.0]))
    assert t.weights.tolist() == pytest.approx([1e-9, 1e-9]) and t.weights.dtype == torch.float32


def test_image_without_positive_class_adds_nothing() -> None:
    t = oicr_targets(BOXES, torch.full((6, 2), 0.5), torch.tensor([0.0, 0.0]))
    assert t.labels.tolist() == [0] * 6 and t.clusters.tolist() == [-1] * 6
    assert t.weights.tolist() == [0.0] * 6 and len(t.centre_boxes) == 0


def test_scores_with_background_column_are_refused() -> None:
    with pytest.raises(ValueError, match=r"background dropped \(pass probs\[:, 1:\]"):
        oicr_targets(BOXES, torch.full((6, 3), 0.5), torch.tensor([1.0, 0.0]))
