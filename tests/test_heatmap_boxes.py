"""Boxes and peaks read off heatmaps, checked against the geometry of known blobs."""

from __future__ import annotations

import math

import pytest
import torch

from wsl.inference.heatmaps import HeatmapBoxConfig, heatmap_boxes, heatmap_peak

SCALE = 10  # a 32x32 heatmap over a 320x320 image: heatmap cell c is centred on pixel 10c + 4.5
SIZE = (32 * SCALE, 32 * SCALE)
SIGMA = 2.0  # blob width in heatmap cells


def blob(row: float, col: float, peak: float = 1.0) -> torch.Tensor:
    """A 32x32 Gaussian heatmap centred on cell ``(row, col)``."""
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    return peak * torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * SIGMA**2))


def expected_box(row: float, col: float, threshold: float) -> torch.Tensor:
    """The pixels where a unit blob at ``(row, col)`` reaches ``threshold``, as a box."""
    radius = SCALE * SIGMA * math.sqrt(-2 * math.log(threshold))
    x, y = SCALE * col + 4.5, SCALE * row + 4.5
    return torch.tensor([x - radius, y - radius, x + radius, y + radius])


def test_two_blobs_of_one_class_give_two_boxes_around_them() -> None:
    heatmap = blob(8, 8) + blob(20, 24)
    found = heatmap_boxes(heatmap[None], SIZE, config=HeatmapBoxConfig(thresholds=(0.5,)))
    assert found.classes.tolist() == [0, 0]
    boxes = sorted(found.boxes.tolist())  # left blob first
    torch.testing.assert_close(torch.tensor(boxes[0]), expected_box(8, 8, 0.5), atol=1.5, rtol=0)
    torch.testing.assert_close(torch.tensor(boxes[1]), expected_box(20, 24, 0.5), atol=1.5, rtol=0)


def test_nested_boxes_overlapping_more_than_nms_iou_collapse_to_one() -> None:
    # One blob: its 0.5 and 0.7 boxes are nested with IoU (0.845 / 1.177)^2 = 0.52.
    heatmap = blob(8, 8)[None]
    tight = expected_box(8, 8, 0.7)
    wide = expected_box(8, 8, 0.5)
    mean = heatmap_boxes(heatmap, SIZE, config=HeatmapBoxConfig(thresholds=(0.5, 0.7)))
    assert len(mean.scores) == 1  # "mean" prefers the tight core
    torch.testing.assert_close(mean.boxes[0], tight, atol=1.5, rtol=0)
    mass_config = HeatmapBoxConfig(thresholds=(0.5, 0.7), score="mass")
    mass = heatmap_boxes(heatmap, SIZE, config=mass_config)
    assert len(mass.scores) == 1  # "mass" prefers the box holding more of the heat
    torch.testing.assert_close(mass.boxes[0], wide, atol=1.5, rtol=0)
    loose_config = HeatmapBoxConfig(thresholds=(0.5, 0.7), nms_iou=0.6)
    assert len(heatmap_boxes(heatmap, SIZE, config=loose_config).scores) == 2


def test_default_config_keeps_scales_that_overlap_less_than_nms_iou() -> None:
    # The 0.3 and 0.7 boxes of one blob overlap with IoU (0.845 / 1.552)^2 = 0.30 < 0.4.
    found = heatmap_boxes(blob(8, 8)[None], SIZE)
    torch.testing.assert_close(found.boxes[0], expected_box(8, 8, 0.7), atol=1.5, rtol=0)
    torch.testing.assert_close(found.boxes[1], expected_box(8, 8, 0.3), atol=1.5, rtol=0)
    assert len(found.scores) == 2


def test_stronger_blob_and_class_score_higher() -> None:
    heatmaps = torch.stack([blob(8, 8, peak=0.4) + blob(20, 24), blob(16, 16)])
    config = HeatmapBoxConfig(thresholds=(0.2,))
    found = heatmap_boxes(heatmaps, SIZE, torch.tensor([0.9, 0.3]), config)
    assert found.classes.tolist() == [0, 0, 1]
    assert found.scores[0] > found.scores[1] > found.scores[2]
    torch.testing.assert_close(found.boxes[0], expected_box(20, 24, 0.2), atol=2.0, rtol=0)
    # Class 1's single blob has the same heat score as class 0's strong one: only 0.3 / 0.9 of it.
    torch.testing.assert_close(found.scores[2], found.scores[0] / 3)


def test_non_square_image_maps_a_corner_cell_to_the_corner() -> None:
    heatmap = torch.zeros(1, 8, 8)
    heatmap[0, 0, 7] = 1.0  # top-right cell of a 200 x 300 (H x W) image: 37.5 x 25 pixel cells
    found = heatmap_boxes(heatmap, (200, 300), config=HeatmapBoxConfig(thresholds=(0.6,)))
    # Bilinear weight of the cell is >= 0.6 where (x + 0.5) * 8 / 300 - 0.5 >= 6.6 (x >= 266)
    # and (y + 0.5) * 8 / 200 - 0.5 <= 0.4 (y <= 22).
    assert found.boxes.tolist() == [[266.0, 0.0, 299.0, 22.0]]


def test_diagonal_neighbours_are_one_component() -> None:
    heatmap = torch.zeros(1, 8, 8)  # at the heatmap's own size upsampling changes nothing
    heatmap[0, 2, 2] = heatmap[0, 3, 3] = 1.0
    found = heatmap_boxes(heatmap, (8, 8), config=HeatmapBoxConfig(thresholds=(0.5,)))
    assert found.boxes.tolist() == [[2.0, 2.0, 3.0, 3.0]]


def test_heatmap_peak_on_non_square_image() -> None:
    heatmap = torch.zeros(8, 8)
    heatmap[0, 7] = 1.0
    assert heatmap_peak(heatmap, (200, 300)) == (7.5 * 37.5 - 0.5, 0.5 * 25 - 0.5)
    heatmap[5, 2] = 2.0
    assert heatmap_peak(heatmap, (200, 300)) == (2.5 * 37.5 - 0.5, 5.5 * 25 - 0.5)


def test_max_per_class_keeps_the_strongest() -> None:
    heatmap = blob(6, 6, 0.5) + blob(6, 24, 1.0) + blob(24, 6, 0.7) + blob(24, 24, 0.9)
    config = HeatmapBoxConfig(thresholds=(0.3,), max_per_class=2)
    found = heatmap_boxes(heatmap[None], SIZE, config=config)
    centres = ((found.boxes[:, :2] + found.boxes[:, 2:]) / 2 - 4.5) / SCALE
    torch.testing.assert_close(centres, torch.tensor([[24.0, 6.0], [24.0, 24.0]]), atol=0.2, rtol=0)


def test_flat_maps_and_skipped_classes_give_no_boxes() -> None:
    heatmaps = torch.stack([torch.zeros(32, 32), torch.full((32, 32), -3.0), blob(8, 8)])
    empty = heatmap_boxes(heatmaps[:2], SIZE)
    assert empty.boxes.shape == (0, 4)
    assert empty.scores.shape == empty.classes.shape == (0,)
    assert heatmap_boxes(heatmaps, SIZE).classes.unique().tolist() == [2]
    assert len(heatmap_boxes(heatmaps, SIZE, classes=[0, 1]).scores) == 0
    low_score = HeatmapBoxConfig(min_class_score=0.5)
    assert len(heatmap_boxes(heatmaps, SIZE, torch.tensor([0.9, 0.9, 0.4]), low_score).scores) == 0


def test_peak_missed_by_downsampling_gives_no_boxes() -> None:
    heatmap = torch.zeros(1, 32, 32)
    heatmap[0, 8, 8] = 1.0  # an 8x8 image samples cells 4x + 1.5: all of them cold
    assert len(heatmap_boxes(heatmap, (8, 8)).scores) == 0


def test_min_area_drops_small_components() -> None:
    heatmap = torch.zeros(1, 32, 32)
    heatmap[0, 8, 8] = 1.0  # at 0.5: 60 pixels (bilinear weight >= 0.5), 0.059% of the image
    small = HeatmapBoxConfig(thresholds=(0.5,), min_area=0.00058)
    assert len(heatmap_boxes(heatmap, SIZE, config=small).scores) == 1
    big = HeatmapBoxConfig(thresholds=(0.5,), min_area=0.0006)
    assert len(heatmap_boxes(heatmap, SIZE, config=big).scores) == 0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="sigmoid"):
        heatmap_boxes(blob(8, 8)[None], SIZE, torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="score must be one of"):
        HeatmapBoxConfig(score="sum")
    with pytest.raises(ValueError, match="thresholds"):
        HeatmapBoxConfig(thresholds=[0.0, 0.5])
    assert HeatmapBoxConfig(thresholds=[0.5]).thresholds == (0.5,)  # lists from Hydra
