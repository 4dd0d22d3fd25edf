"""Transforms move boxes with the image, in the inclusive-pixel convention."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from wsl.data.transforms import IMAGENET_MEAN, build_transform
from wsl.structures.boxes import boxes_to_original, continuous_to_inclusive, inclusive_to_continuous


def sample(width: int = 100, height: int = 60) -> dict:
    """An image with a white block at columns 10..29, rows 5..24 and that block's box."""
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    image[:, 5:25, 10:30] = 255
    box = inclusive_to_continuous(torch.tensor([[10.0, 5.0, 29.0, 24.0]]))
    return {
        "image": tv_tensors.Image(image),
        "boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(height, width)),
    }


def white_block(image: torch.Tensor) -> list[int]:
    """Inclusive extent [x1, y1, x2, y2] of the bright pixels."""
    ys, xs = torch.nonzero(image[0] > 127, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def test_flip_moves_the_box_to_the_mirrored_pixels() -> None:
    out = v2.RandomHorizontalFlip(p=1.0)(sample())
    box = continuous_to_inclusive(out["boxes"].as_subclass(torch.Tensor))[0]
    # Columns 10..29 of a 100-wide image land on 99-29=70 .. 99-10=89.
    assert box.tolist() == [70.0, 5.0, 89.0, 24.0]
    assert white_block(out["image"]) == [70, 5, 89, 24]


def test_flip_transform_flips_about_half_the_time() -> None:
    transform = build_transform(resize="square", scales=[100], flip=True)
    torch.manual_seed(0)
    flipped = sum(transform(sample(100, 100))["boxes"][0, 0].item() > 50 for _ in range(200))
    assert 70 < flipped < 130


def test_shortest_side_resize_scales_boxes_and_caps_the_longer_side() -> None:
    transform = build_transform(resize="shortest_side", scales=[120], max_size=150)
    out = transform(sample(100, 60))
    assert tuple(out["image"].shape) == (3, 90, 150)  # 120 would make the long side 200 > 150
    box = continuous_to_inclusive(out["boxes"].as_subclass(torch.Tensor))[0]
    assert box.tolist() == [15.0, 7.5, 44.0, 36.5]  # [10, 30) * 1.5 = [15, 45) -> 15..44
    assert boxes_to_original(box[None], (90, 150), (60, 100))[0].tolist() == [10, 5, 29, 24]


def test_square_resize_multi_scale_and_normalisation() -> None:
    transform = build_transform(resize="square", scales=[32, 64])
    sizes = {tuple(transform(sample())["image"].shape) for _ in range(40)}
    assert sizes == {(3, 32, 32), (3, 64, 64)}
    out = transform(sample())
    black = out["image"][:, -1, -1]  # a black pixel becomes -mean/std
    assert torch.allclose(black[0], torch.tensor(-IMAGENET_MEAN[0] / 0.229), atol=1e-4)
    assert out["image"].dtype == torch.float32


def test_longest_side_scales_the_longer_side_and_the_box() -> None:
    """OICR's Caffe test and pcl.pytorch scale the longer side: 100x60 -> 200x120."""
    out = build_transform(resize="longest_side", scales=[200], max_size=None)(sample())
    assert tuple(out["image"].shape[-2:]) == (120, 200)
    box = continuous_to_inclusive(out["boxes"].as_subclass(torch.Tensor))[0]
    assert box.tolist() == [20.0, 10.0, 59.0, 49.0]  # pixels [a, b] -> [2a, 2b + 1]


def test_longest_side_refuses_a_max_size() -> None:
    with pytest.raises(ValueError, match="max_size=2000 caps it for shortest_side only"):
        build_transform(resize="longest_side", scales=[1200], max_size=2000)
