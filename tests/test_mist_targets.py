"""MIST's pseudo labels and per-stream loss (wsl.pseudo_labels.mist) on hand-computed cases.

A 10x10 box ``A = [0, 0, 9, 9]`` has area 100; ``[0, 0, 9, k]`` lies inside it and has IoU
``(k + 1) / 10`` with it: k = 4 → 0.5 (foreground), k = 3 → 0.4 (background), k = 1 → 0.2 (as
close as a top box may come to a higher one: suppressed). ``[0, 5, 9, 14]`` shares 5 rows of 10
pixels with ``A``: IoU 50 / 150 = 1/3. Boxes 20 pixels apart do not overlap.
"""

from __future__ import annotations

import math

import pytest
import torch

from wsl.pseudo_labels.mist import MISTTargets, mist_loss, mist_targets
from wsl.structures.box_coder import decode_deltas, encode_deltas

A = [0.0, 0.0, 9.0, 9.0]


def far_boxes(count: int, start: int = 0) -> list[list[float]]:
    """``count`` disjoint 10x10 boxes in a row at y 300, each 20 pixels right of the last."""
    return [[300.0 + 20 * i, 300.0, 309.0 + 20 * i, 309.0] for i in range(start, start + count)]


def one_class(boxes: list[list[float]], top_scores: list[float]) -> MISTTargets:
    """Targets for one class present: the first boxes score ``top_scores``, the rest 0.01 each
    less than the last (all below the top ones)."""
    rest = [0.01 * (1 - i / len(boxes)) for i in range(len(boxes) - len(top_scores))]
    scores = torch.tensor([*top_scores, *rest])[:, None]
    return mist_targets(torch.tensor(boxes), scores, torch.tensor([1.0]))


def test_a_close_top_box_is_suppressed_a_far_one_kept() -> None:
    # 20 proposals → the top 3: A, then [0, 5, 9, 14] (IoU 1/3 with A ≥ 0.2: suppressed), then a
    # box far from both (kept).
    boxes = [A, [0.0, 5.0, 9.0, 14.0], [0.0, 40.0, 9.0, 49.0], *far_boxes(17)]
    t = one_class(boxes, [0.9, 0.8, 0.7])
    assert t.centre_boxes.tolist() == [A, [0.0, 40.0, 9.0, 49.0]]
    assert t.centre_labels.tolist() == [1, 1]
    assert t.centre_scores.tolist() == pytest.approx([0.9, 0.7])


def test_a_top_box_is_compared_with_suppressed_higher_ones_too() -> None:
    # [0, 10, 9, 19] does not touch A but overlaps the suppressed [0, 5, 9, 14] by 1/3: wetectron
    # compares rank i with all k boxes above it (ious[:, ii, :ii]), so it is suppressed as well.
    boxes = [A, [0.0, 5.0, 9.0, 14.0], [0.0, 10.0, 9.0, 19.0], *far_boxes(17)]
    t = one_class(boxes, [0.9, 0.8, 0.7])
    assert t.centre_boxes.tolist() == [A]
    assert t.labels[2] == 0  # and, IoU 0 with A, background


@pytest.mark.parametrize(
    ("second", "kept"),
    [([0.0, 0.0, 9.0, 1.0], False), ([0.0, 0.0, 8.0, 1.0], True)],
    ids=["iou-0.2-suppressed", "iou-0.18-kept"],
)
def test_suppression_needs_iou_below_0_2(second: list[float], kept: bool) -> None:
    # [0, 0, 9, 1]: 20 pixels inside A, IoU 20 / 100 = 0.2, not below 0.2. [0, 0, 8, 1]: 18 / 100.
    # The third of the top 3 is the first far box, always kept.
    far = far_boxes(18)
    t = one_class([A, second, *far], [0.9, 0.8])
    assert t.centre_boxes.tolist() == ([A, second, far[0]] if kept else [A, far[0]])


@pytest.mark.parametrize(
    ("num_boxes", "k"),
    [(1, 1), (5, 1), (6, 1), (7, 1), (13, 1), (19, 2), (20, 3), (40, 6), (100, 15)],
)
def test_top_15_percent(num_boxes: int, k: int) -> None:
    # Disjoint boxes, scores falling with the index: the pseudo boxes are the first
    # int(0.15 R) boxes (truncated: 1.95 → 1, 2.85 → 2), at least 1 (wetectron fails below 7
    # proposals, where int(0.15 R) = 0).
    boxes = far_boxes(num_boxes)
    scores = torch.linspace(0.9, 0.1, num_boxes)[:, None]
    t = mist_targets(torch.tensor(boxes), scores, torch.tensor([1.0]))
    assert t.centre_boxes.tolist() == boxes[:k]
    assert t.centre_scores.tolist() == pytest.approx(scores[:k, 0].tolist())
    assert t.labels.tolist() == [1] * k + [0] * (num_boxes - k)


def test_equal_scores_rank_the_first_proposal_first() -> None:
    # 7 proposals tie for the top 3: a stable sort takes the first three (torch's default sort
    # takes others).
    boxes = far_boxes(20)
    scores = torch.full((20, 1), 0.01)
    scores[::3] = 0.5
    t = mist_targets(torch.tensor(boxes), scores, torch.tensor([1.0]))
    assert t.centre_boxes.tolist() == [boxes[0], boxes[3], boxes[6]]


def test_the_top_box_is_kept_whatever_the_threshold() -> None:
    # iou_threshold 0 suppresses every box below the top, even disjoint ones; the top one stays.
    t = one_class(far_boxes(20), [0.9, 0.8, 0.7])
    assert len(t.centre_boxes) == 3
    t = mist_targets(
        torch.tensor(far_boxes(20)),
        torch.linspace(0.9, 0.1, 20)[:, None],
        torch.tensor([1.0]),
        iou_threshold=0.0,
    )
    assert t.centre_boxes.tolist() == far_boxes(1)


B = [100.0, 0.0, 109.0, 9.0]
# 20 proposals → top 3: A (0.9), B (0.6), [0, 0, 9, 4] (0.5, IoU 0.5 with A: suppressed).
ASSIGNMENT_BOXES = [
    A,
    B,
    [0.0, 0.0, 9.0, 4.0],  # IoU 0.5 with A: class 1
    [0.0, 0.0, 9.0, 3.0],  # IoU 0.4 with A: background, A's weight
    [100.0, 0.0, 109.0, 6.0],  # IoU 0.7 with B: class 1, B's weight
    [5.0, 0.0, 104.0, 9.0],  # 50 / 1050 with A and with B: the first, A; background
    *far_boxes(14),  # IoU 0 with both: the first, A; background
]


def test_assignment_to_the_nearest_pseudo_box() -> None:
    t = one_class(ASSIGNMENT_BOXES, [0.9, 0.6, 0.5])
    assert t.centre_boxes.tolist() == [A, B]
    assert t.centre_scores.tolist() == pytest.approx([0.9, 0.6])
    assert t.labels.tolist() == [1, 1, 1, 0, 1, 0] + [0] * 14
    # Background keeps its pseudo box's score: wetectron ignores no proposal.
    assert t.weights.tolist() == pytest.approx([0.9, 0.6, 0.9, 0.9, 0.6, 0.9] + [0.9] * 14)
    assert t.target_boxes.tolist() == [A, B, A, A, B, A] + [A] * 14
    assert t.labels.dtype == torch.int64 and t.weights.dtype == torch.float32


def test_regression_targets_by_hand_and_decoded_back() -> None:
    boxes = torch.tensor(ASSIGNMENT_BOXES)
    t = one_class(ASSIGNMENT_BOXES, [0.9, 0.6, 0.5])
    fg = (t.labels > 0).nonzero().squeeze(1)
    deltas = encode_deltas(t.target_boxes[fg], boxes[fg])
    # [0, 0, 9, 4] (cy 2.5, h 5) to A (cy 5, h 10): dy = 10 * 2.5 / 5, dh = 5 log 2.
    # [100, 0, 109, 6] (cy 3.5, h 7) to B (cy 5, h 10): dy = 10 * 1.5 / 7, dh = 5 log(10 / 7).
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 5.0, 0.0, 5 * math.log(2)],
            [0.0, 15 / 7, 0.0, 5 * math.log(10 / 7)],
        ]
    )
    torch.testing.assert_close(deltas, expected)
    torch.testing.assert_close(decode_deltas(deltas, boxes[fg]), torch.tensor([A, B, A, B]))


def test_two_classes_share_a_top_proposal() -> None:
    # Classes 0 and 2 present (labels 1 and 3); 7 proposals → k = 1. Proposal 0 tops both, so it
    # is the pseudo box of each; its ties go to the first, class 0. Class 1 is absent: its high
    # score on proposal 2 is unused.
    boxes = torch.tensor([A, [0.0, 0.0, 9.0, 4.0], *far_boxes(5)])
    scores = torch.full((7, 3), 0.01)
    scores[0, 0], scores[0, 2], scores[2, 1] = 0.7, 0.4, 0.9
    t = mist_targets(boxes, scores, torch.tensor([1.0, 0.0, 1.0]))
    assert t.centre_boxes.tolist() == [A, A]
    assert t.centre_labels.tolist() == [1, 3]
    assert t.centre_scores.tolist() == pytest.approx([0.7, 0.4])
    assert t.labels.tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert t.weights.tolist() == pytest.approx([0.7] * 7)


def test_each_class_has_its_own_pseudo_box() -> None:
    boxes = torch.tensor([A, [0.0, 0.0, 9.0, 4.0], B, [100.0, 0.0, 109.0, 6.0], *far_boxes(3)])
    scores = torch.full((7, 2), 0.01)
    scores[0, 0], scores[2, 1] = 0.7, 0.4
    t = mist_targets(boxes, scores, torch.tensor([1.0, 1.0]))
    assert t.centre_boxes.tolist() == [A, B]
    assert t.labels.tolist() == [1, 1, 2, 2, 0, 0, 0]
    assert t.weights.tolist() == pytest.approx([0.7, 0.7, 0.4, 0.4, 0.7, 0.7, 0.7])


def test_single_proposal() -> None:
    t = mist_targets(torch.tensor([A]), torch.tensor([[0.3]]), torch.tensor([1.0]))
    assert t.labels.tolist() == [1]
    assert t.weights.tolist() == pytest.approx([0.3])
    assert t.target_boxes.tolist() == [A]


def loss_case() -> tuple[torch.Tensor, MISTTargets]:
    """3 proposals → k = 1: A (0.8) the pseudo box; [0, 0, 9, 4] class 1; a far box background;
    all weighted 0.8."""
    boxes = torch.tensor([A, [0.0, 0.0, 9.0, 4.0], [50.0, 50.0, 59.0, 59.0]])
    t = mist_targets(boxes, torch.tensor([[0.8], [0.1], [0.1]]), torch.tensor([1.0]))
    assert t.labels.tolist() == [1, 1, 0]
    assert t.weights.tolist() == pytest.approx([0.8] * 3)
    return boxes, t


def test_loss_by_hand() -> None:
    boxes, t = loss_case()
    log3, log2 = math.log(3), math.log(2)
    # Softmax of [0, log 3] is [1/4, 3/4]: CE log(4/3) for the class-1 proposal 0 and for the
    # background proposal 2 (logits [log 3, 0]); [0, 0] gives log 2 for proposal 1.
    logits = torch.tensor([[0.0, log3], [0.0, 0.0], [log3, 0.0]], requires_grad=True)
    # Class 1's deltas are columns 4-7; the background's (9s) and proposal 2's (7s) are unused.
    # Proposal 0's target is 0 (A itself): smooth-L1 of -2 is 2 - 0.5 = 1.5.
    # Proposal 1's target is (0, 5, 0, 5 log 2): 0.5 → 0.5 * 0.5^2 = 0.125, 3 vs 5 → 1.5.
    deltas = torch.tensor(
        [
            [9.0, 9.0, 9.0, 9.0, 0.0, 0.0, 0.0, -2.0],
            [9.0, 9.0, 9.0, 9.0, 0.5, 3.0, 0.0, 5 * log2],
            [7.0] * 8,
        ],
        requires_grad=True,
    )
    cls_loss, reg_loss = mist_loss(logits, deltas, boxes, t)
    assert cls_loss.ndim == 0 and reg_loss.ndim == 0
    assert float(cls_loss.detach()) == pytest.approx(0.8 * (2 * math.log(4 / 3) + log2) / 3)
    assert float(reg_loss.detach()) == pytest.approx(0.8 * (1.5 + 0.125 + 1.5) / 3)
    (cls_loss + reg_loss).backward()
    assert deltas.grad is not None and logits.grad is not None
    assert not deltas.grad[:, :4].any() and not deltas.grad[2].any()  # only positives' class
    assert logits.grad.abs().sum() > 0


def test_no_positive_class() -> None:
    boxes = torch.tensor([A, *far_boxes(9)])
    t = mist_targets(boxes, torch.rand(10, 2), torch.tensor([0.0, 0.0]))
    assert t.labels.tolist() == [0] * 10
    assert t.weights.tolist() == [0.0] * 10
    assert torch.equal(t.target_boxes, boxes)  # zero regression targets
    assert len(t.centre_boxes) == len(t.centre_labels) == len(t.centre_scores) == 0
    logits = torch.randn(10, 3, requires_grad=True)
    deltas = torch.randn(10, 12, requires_grad=True)
    cls_loss, reg_loss = mist_loss(logits, deltas, boxes, t)
    assert float(cls_loss.detach()) == 0.0 and float(reg_loss.detach()) == 0.0
    (cls_loss + reg_loss).backward()
    assert logits.grad is not None and not logits.grad.any()


def test_bad_shapes_raise() -> None:
    boxes, t = loss_case()
    with pytest.raises(ValueError, match="class-specific"):
        mist_loss(torch.zeros(3, 2), torch.zeros(3, 4), boxes, t)
    with pytest.raises(ValueError, match="R = 3"):
        mist_loss(torch.zeros(2, 2), torch.zeros(2, 8), boxes, t)
    with pytest.raises(ValueError, match="scores must be"):
        mist_targets(boxes, torch.zeros(3, 2), torch.tensor([1.0]))
