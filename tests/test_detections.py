"""Region scores to detections (threshold, per-class NMS with the +1 convention, top-k) and the
test-time views (rescaled and flipped images with their boxes)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchvision.transforms import v2

from wsl.inference.regions import (
    DetectionConfig,
    TTAConfig,
    longest_side_size,
    region_detections,
    shortest_side_size,
    view_of_batch,
)
from wsl.structures.boxes import hflip_boxes

# Two 10x10-pixel boxes 4 pixels apart: IoU 60 / 140 = 0.43 with the +1 convention (above the
# NMS threshold 0.4), 45 / 117 = 0.38 without it (below).
A = [0.0, 0.0, 9.0, 9.0]
B = [4.0, 0.0, 13.0, 9.0]
FAR = [50.0, 50.0, 59.0, 59.0]


def detect(boxes: list[list[float]], scores: list[list[float]], **config: float) -> tuple:
    found = region_detections(torch.tensor(boxes), torch.tensor(scores), DetectionConfig(**config))
    return tuple(t.tolist() for t in found)


def test_nms_uses_the_plus_one_convention_at_0_4() -> None:
    boxes, scores, classes = detect([A, B, FAR], [[0.9], [0.8], [0.7]])
    assert boxes == [A, FAR]
    assert scores == pytest.approx([0.9, 0.7])
    assert classes == [0, 0]


def test_nms_keeps_boxes_overlapping_at_most_the_threshold() -> None:
    boxes, _, _ = detect([A, B], [[0.9], [0.8]], nms_iou=0.43)  # IoU 0.4286 is not above 0.43
    assert boxes == [A, B]


def test_classes_are_suppressed_independently() -> None:
    # Class 0 prefers A, class 1 prefers B: each keeps its own best, B is suppressed in class 0
    # only, A in class 1 only.
    boxes, scores, classes = detect([A, B], [[0.9, 0.2], [0.8, 0.6]])
    assert list(zip(boxes, classes, strict=True)) == [(A, 0), (B, 1)]
    assert scores == pytest.approx([0.9, 0.6])


def test_threshold_drops_scores_not_above_it() -> None:
    boxes, scores, classes = detect([A, FAR], [[0.5, 0.05], [0.1, 0.3]], score_threshold=0.1)
    assert scores == pytest.approx([0.5, 0.3])
    assert list(zip(boxes, classes, strict=True)) == [(A, 0), (FAR, 1)]


def test_top_k_keeps_the_best_of_all_classes_best_first() -> None:
    boxes, scores, classes = detect([A, FAR], [[0.2, 0.7], [0.9, 0.1]], top_k=3)
    assert scores == pytest.approx([0.9, 0.7, 0.2])
    assert list(zip(boxes, classes, strict=True)) == [(FAR, 0), (A, 1), (A, 0)]


def test_tiny_scores_are_kept_at_full_precision() -> None:
    _, scores, _ = detect([A], [[1.2345678e-7]])
    assert scores == [torch.tensor(1.2345678e-7).item()]


def test_no_candidate_gives_empty_detections() -> None:
    boxes, scores, classes = region_detections(
        torch.tensor([A]), torch.tensor([[0.05]]), DetectionConfig(score_threshold=0.1)
    )
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)


def box_of_mask(mask: Tensor) -> list[float]:
    """Inclusive box of the nonzero pixels of a (H, W) mask."""
    ys, xs = mask.nonzero(as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def test_hflip_boxes_maps_column_x_to_width_minus_1_minus_x() -> None:
    boxes = torch.tensor([[0.0, 2.0, 3.0, 5.0], [7.0, 0.0, 9.0, 1.0]])
    assert hflip_boxes(boxes, 10).tolist() == [[6.0, 2.0, 9.0, 5.0], [0.0, 0.0, 2.0, 1.0]]
    assert torch.equal(hflip_boxes(hflip_boxes(boxes, 10), 10), boxes)
    mask = torch.zeros(8, 10)
    mask[2:6, 0:4] = 1  # the first box's pixels
    assert box_of_mask(mask.flip(-1)) == hflip_boxes(boxes[:1], 10)[0].tolist()


@pytest.mark.parametrize(("size", "scale", "max_size"), [((75, 100), 60, None), ((75, 100), 60, 70),
                                                          ((101, 37), 50, 1000)])  # fmt: skip
def test_view_size_is_the_data_transforms_size(
    size: tuple[int, int], scale: int, max_size: int | None
) -> None:
    resized = v2.RandomShortestSize([scale], max_size=max_size)(torch.zeros(3, *size))
    assert shortest_side_size(size, scale, max_size) == tuple(resized.shape[-2:])


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    # the longer side becomes the scale, the shorter int(scale * short / long)
    [((375, 500), 1200, (900, 1200)), ((500, 333), 1200, (1200, 799)),
     ((400, 400), 480, (480, 480)), ((101, 37), 50, (50, 18))],
)  # fmt: skip
def test_longest_side_view_size_is_the_data_transforms_size(
    size: tuple[int, int], scale: int, expected: tuple[int, int]
) -> None:
    resized = v2.Resize(size=None, max_size=scale)(torch.zeros(3, *size))
    assert longest_side_size(size, scale) == expected == tuple(resized.shape[-2:])


def test_tta_resize_is_checked() -> None:
    with pytest.raises(ValueError, match=r"model\.net\.tta\.resize='longer' is not valid"):
        TTAConfig(resize="longer")
    with pytest.raises(
        ValueError, match=r"model\.net\.tta\.max_size=2000 caps it for shortest_side"
    ):
        TTAConfig(scales=[480], max_size=2000, resize="longest_side")


def test_views_cover_every_scale_and_flip() -> None:
    assert TTAConfig().views() == [(None, False)]
    assert TTAConfig(flip=True).views() == [(None, False), (None, True)]
    views = TTAConfig(scales=[40, 80], flip=True).views()
    assert views == [(40, False), (40, True), (80, False), (80, True)]


@pytest.fixture
def batch() -> dict:
    """Two images of different sizes padded to 20x30, each with a bright box on it."""
    images = torch.zeros(2, 3, 20, 30)
    images[0, :, 4:10, 2:8] = 1.0  # 20x30 image, box [2, 4, 7, 9]
    images[1, :, 1:5, 10:16] = 1.0  # 10x16 image, box [10, 1, 15, 4]
    return {
        "image": images,
        "proposals": [torch.tensor([[2.0, 4.0, 7.0, 9.0]]), torch.tensor([[10.0, 1.0, 15.0, 4.0]])],
        "input_size": [(20, 30), (10, 16)],
        "original_size": [(40, 60), (20, 32)],  # both were resized by 1/2
    }


def view(batch: dict, scale: int | None, flipped: bool) -> tuple[Tensor, list[Tensor]]:
    images, proposals, _ = view_of_batch(
        batch["image"], batch["proposals"], batch["input_size"], batch["original_size"],
        scale, flipped,
    )  # fmt: skip
    return images, proposals


def test_the_batch_itself_is_a_view(batch: dict) -> None:
    images, proposals = view(batch, None, False)
    assert images is batch["image"] and proposals == batch["proposals"]


def test_flipped_view_moves_boxes_with_the_pixels(batch: dict) -> None:
    images, proposals = view(batch, None, True)
    assert images.shape == (2, 3, 20, 30)
    for i, (height, width) in enumerate(batch["input_size"]):
        assert box_of_mask(images[i, 0]) == proposals[i][0].tolist()
        assert images[i, :, height:].abs().sum() == 0 and images[i, :, :, width:].abs().sum() == 0
    assert proposals[1].tolist() == [[0.0, 1.0, 5.0, 4.0]]  # 16 - 1 - [15, 10]


def test_longest_side_view_scales_the_longer_side_of_the_original(batch: dict) -> None:
    images, proposals, _ = view_of_batch(
        batch["image"], batch["proposals"], batch["input_size"], batch["original_size"],
        64, False, resize="longest_side",
    )  # fmt: skip
    # 40x60 -> longer side 64: int(64 * 40 / 60) = 42 x 64; 20x32 -> 40x64 (4x its 10x16 input)
    assert images.shape == (2, 3, 42, 64)
    assert proposals[1].tolist() == [[40.0, 4.0, 63.0, 19.0]]  # [a, b] -> [4a, 4b + 3]
    assert box_of_mask(images[1, 0] > 0.5) == proposals[1][0].tolist()


def test_scaled_view_resizes_each_image_from_its_original_size(batch: dict) -> None:
    images, proposals = view(batch, 40, False)  # shorter sides -> 40: 2x and 4x the inputs
    assert images.shape == (2, 3, 40, 64)
    assert proposals[0].tolist() == [[4.0, 8.0, 15.0, 19.0]]  # pixels [a, b] -> [2a, 2b + 1]
    assert proposals[1].tolist() == [[40.0, 4.0, 63.0, 19.0]]  # [a, b] -> [4a, 4b + 3]
    for i in range(2):
        assert box_of_mask(images[i, 0] > 0.5) == proposals[i][0].tolist()
    assert images[0, :, :, 60:].abs().sum() == 0  # padding right of the 40x60 image
    flipped_images, flipped = view(batch, 40, True)
    assert torch.equal(flipped_images[0, :, :, :60], images[0, :, :, :60].flip(-1))
    assert flipped[0].tolist() == hflip_boxes(proposals[0], 60).tolist()
    assert flipped[1].tolist() == hflip_boxes(proposals[1], 64).tolist()
