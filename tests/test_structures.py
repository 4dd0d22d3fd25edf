"""The one box-geometry home: IoU with the +1 pixel convention, on arrays and tensors alike; the
top box of a class in one image's detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsl.callbacks.box_pictures import top_box_per_class
from wsl.structures.boxes import voc_iou
from wsl.structures.detections import Detections, ImageDetections


def test_voc_iou_counts_pixels_inclusively() -> None:
    # a: 10 x 10 pixels (0..9), b: 10 x 10 pixels (5..14): overlap 5 x 5 = 25 of 175
    a, b = np.array([0, 0, 9, 9]), np.array([5, 5, 14, 14])
    assert voc_iou(a, b) == pytest.approx(25 / 175)
    assert voc_iou(a, np.array([10, 0, 19, 9])) == 0  # adjacent columns: no shared pixel
    assert voc_iou(a, np.array([9, 0, 18, 9])) == pytest.approx(10 / 190)  # one shared column


def test_voc_iou_is_the_same_on_tensors_and_broadcasts() -> None:
    boxes = np.array([[0, 0, 9, 9], [5, 5, 14, 14], [2, 3, 4, 20]], dtype=np.float64)
    matrix = voc_iou(boxes[:, None], boxes[None])
    assert matrix.shape == (3, 3) and matrix.dtype == np.float64
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    tensors = torch.tensor(boxes, dtype=torch.float32, requires_grad=True)
    on_tensors = voc_iou(tensors[:, None], tensors[None])
    assert isinstance(on_tensors, torch.Tensor) and on_tensors.dtype == torch.float32
    np.testing.assert_allclose(on_tensors.detach().numpy(), matrix, rtol=1e-6)
    on_tensors[0, 1].backward()  # differentiable (the spatial regulariser's IoU)
    assert tensors.grad is not None


def test_top_of_class_is_the_first_best_box_of_the_class() -> None:
    boxes = torch.tensor([[0.0, 0, 9, 9], [1, 1, 5, 5], [2, 2, 8, 8], [3, 3, 4, 4]])
    scores = torch.tensor([0.2, 0.7, 0.7, 0.9])
    classes = torch.tensor([1, 1, 1, 2])
    detections = ImageDetections.of(boxes, scores, classes)
    assert detections.top_of_class(1) == 1  # 0.7 twice: the first
    assert detections.top_of_class(2) == 3
    assert detections.top_of_class(0) is None
    top = top_box_per_class(boxes, scores, classes, [2, 0, 1])  # the pictures' (class, box, score)
    assert [(c, box.tolist(), score) for c, box, score in top] == [
        (2, [3.0, 3, 4, 4], pytest.approx(0.9)), (1, [1.0, 1, 5, 5], pytest.approx(0.7)),
    ]  # fmt: skip


def test_detections_top_keeps_the_order_cuts_at_the_threshold_and_names_classes() -> None:
    found = Detections(
        torch.tensor([[0.0, 0, 9, 9], [1, 1, 5, 5], [2, 2, 8, 8], [3, 3, 4, 4]]),
        torch.tensor([0.9, 0.5, 0.05, 0.01]),
        torch.tensor([2, 0, 2, 1]),
    )
    top = found.top(0.05, None)  # 0.05 itself is kept
    assert top.scores.tolist() == pytest.approx([0.9, 0.5, 0.05])
    assert top.boxes[2].tolist() == [2, 2, 8, 8]
    assert found.top(0.0, 2).classes.tolist() == [2, 0]
    assert len(found.top(0.95, 10).scores) == 0
    assert top.labels(["cat", "dog", "bird"]) == ["bird", "cat", "bird"]
    assert found.subset(found.classes == 2).scores.tolist() == pytest.approx([0.9, 0.05])
    _, scores, _ = found  # the record unpacks as the tuple it is
    assert scores is found.scores
    assert ImageDetections.of(*found).classes.tolist() == [2, 0, 2, 1]
