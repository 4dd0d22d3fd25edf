"""``wsl.load(ckpt).detect(images)`` with real checkpoints (a briefly trained Localizer and
WSDDN): paths, PIL images and tensors give the same detections, in pixels of the input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

import wsl
from tests.support import CLASSES, CONF_DIR, train_checkpoint
from wsl.structures.detections import Detections

IMAGE_ID = "000001"


def image_path(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{IMAGE_ID}.jpg"


def doubled(image: Image.Image) -> Image.Image:
    """``image`` at twice its size, each pixel a 2x2 block."""
    return image.resize((2 * image.width, 2 * image.height), Image.Resampling.NEAREST)


def same(a: Detections, b: Detections) -> None:
    assert a.classes.tolist() == b.classes.tolist()
    torch.testing.assert_close(a.boxes, b.boxes)
    torch.testing.assert_close(a.scores, b.scores)


def check_inside(found: Detections, width: int, height: int) -> None:
    assert len(found.classes) == len(found.boxes) == len(found.scores) > 0
    assert ((found.classes >= 0) & (found.classes < len(CLASSES))).all()
    x1, y1, x2, y2 = found.boxes.T
    assert (x1 >= 0).all() and (x1 <= x2).all() and (x2 <= width - 1).all()
    assert (y1 >= 0).all() and (y1 <= y2).all() and (y2 <= height - 1).all()


def test_importing_wsl_is_cheap_and_load_is_there() -> None:
    code = "import sys, wsl; assert 'torch' not in sys.modules; print(wsl.__all__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=CONF_DIR.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['load']"
    assert wsl.load.__module__ == "wsl.detector"


def test_localizer_detects_paths_pil_images_and_tensors_alike(
    localizer_ckpt: Path, generated_root: Path
) -> None:
    detector = wsl.load(localizer_ckpt, device="cpu", score_threshold=0.0)
    path = image_path(generated_root)
    with Image.open(path) as opened:
        pil = opened.convert("RGB")
    by_path, by_pil, by_uint8, by_float = detector.detect(
        [str(path), pil, pil_to_tensor(pil), pil_to_tensor(pil).float() / 255]
    )
    check_inside(by_path, pil.width, pil.height)
    for other in (by_pil, by_uint8, by_float):
        same(by_path, other)
    (single,) = detector.detect(path)
    same(by_path, single)


def test_localizer_boxes_are_in_pixels_of_the_input(
    localizer_ckpt: Path, generated_root: Path
) -> None:
    """The same image at twice the size: the same classes and scores, boxes twice as large."""
    detector = wsl.load(localizer_ckpt, device="cpu", score_threshold=0.0, max_boxes=1)
    with Image.open(image_path(generated_root)) as opened:
        pil = opened.convert("RGB")
    small, large = detector.detect([pil, doubled(pil)])
    check_inside(large, 2 * pil.width, 2 * pil.height)
    assert small.classes.tolist() == large.classes.tolist()
    torch.testing.assert_close(small.scores, large.scores, atol=0.02, rtol=0)
    # inclusive pixels: x1 -> 2 x1, x2 -> 2 x2 + 1 (heatmaps are upsampled to the input)
    scaled = small.boxes * 2 + torch.tensor([0.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(large.boxes, scaled, atol=4.0, rtol=0)


def test_bad_tensor_is_refused_clearly(localizer_ckpt: Path) -> None:
    detector = wsl.load(localizer_ckpt, device="cpu")
    with pytest.raises(ValueError, match=r"3xHxW \(RGB\), got \(1, 8, 8\)"):
        detector.detect(torch.zeros(1, 8, 8, dtype=torch.uint8))


@pytest.mark.slow
def test_wsddn_scores_given_or_computed_proposals_in_input_pixels(
    generated_root: Path, tmp_path: Path
) -> None:
    ckpt = train_checkpoint(
        generated_root, tmp_path / "train", "experiment=wsddn_demo",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0",
    )  # fmt: skip
    detector = wsl.load(ckpt, device="cpu", score_threshold=0.0, max_boxes=3)
    with Image.open(image_path(generated_root)) as opened:
        pil = opened.convert("RGB")
    # Selective search computed on the image: the same for a path, a PIL image and a tensor.
    by_path, by_pil, by_tensor = detector.detect(
        [image_path(generated_root), pil, pil_to_tensor(pil)]
    )
    check_inside(by_path, pil.width, pil.height)
    same(by_path, by_pil)
    same(by_path, by_tensor)
    # Given proposals; the doubled image with its proposals doubled (inclusive pixels).
    w, h = pil.width, pil.height
    boxes = np.array(
        [[0, 0, w // 2, h // 2], [w // 4, h // 4, w - 1, h - 1], [0, h // 3, w - 1, h - 1]],
        dtype=np.float32,
    )
    small, large = detector.detect(
        [pil, doubled(pil)], proposals=[boxes, boxes * 2 + np.array([0, 0, 1, 1])]
    )
    assert small.classes.tolist() == large.classes.tolist()
    torch.testing.assert_close(small.scores, large.scores, atol=1e-3, rtol=0.05)
    torch.testing.assert_close(large.boxes, small.boxes * 2 + torch.tensor([0, 0, 1, 1.0]))
