"""Image files to tensors, in one place (wsl/data/images.py): as stored for data sets, upright
(and downscaled to ``max_size``) for the images of ``wsl.predict`` and ``Detector.detect``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wsl.data.images import read_rgb_tensor, read_upright_tensor

ORIENTATION = 0x0112  # the EXIF tag


def _photo(path: Path, orientation: int = 1) -> Path:
    pixels = np.zeros((40, 100, 3), np.uint8)  # 100 wide, 40 high
    pixels[:, :10] = 255  # a white band on the left of the stored pixels
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    image.save(path, exif=exif)
    return path


def test_as_stored_and_upright(tmp_path: Path) -> None:
    path = _photo(tmp_path / "turned.png", orientation=6)  # viewers turn it 90 degrees clockwise
    stored = read_rgb_tensor(path)
    assert stored.dtype == torch.uint8 and stored.shape == (3, 40, 100)
    assert stored[:, :, :10].eq(255).all()
    upright, on_disk, orientation = read_upright_tensor(path)
    assert (upright.shape, on_disk, orientation) == ((3, 100, 40), (100, 40), 6)
    assert upright[:, :10].eq(255).all()  # the band is on top once turned


def test_downscaled_to_max_size_with_the_full_size_reported(tmp_path: Path) -> None:
    path = _photo(tmp_path / "wide.png")
    image, on_disk, orientation = read_upright_tensor(path, max_size=50)
    assert (image.shape, on_disk, orientation) == ((3, 20, 50), (40, 100), 1)
    assert read_upright_tensor(path, max_size=100)[0].shape == (3, 40, 100)  # not above it
