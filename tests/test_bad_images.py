"""Damaged and unusual image files on disk, through the datamodule's setup and the dataset:
corrupt JPEGs that PIL decodes without a word, files that open but do not decode, PNGs
named ``.jpg``, and 16-bit images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import compose_cfg
from wsl.data.annotations import read_image_set
from wsl.data.bad_input import DataError
from wsl.data.datamodule import VOCImageLabelsDataModule
from wsl.data.dataset import VOCDataset
from wsl.data.images import read_rgb
from wsl.data.voc import VOCIndex
from wsl.train import train

VOC = Path("VOCdevkit/VOC2007")


def first_image(root: Path) -> Path:
    first = read_image_set(root / VOC, "trainval")[0]
    return root / VOC / "JPEGImages" / f"{first}.jpg"


def scan_start(data: bytes) -> int:
    """Offset of the entropy-coded data: after the start-of-scan marker and its header."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def damage_jpeg(path: Path, how: str) -> None:
    data = path.read_bytes()
    start = scan_start(data)
    middle = (start + len(data)) // 2
    rng = np.random.default_rng(0)
    if how == "truncated, end marker appended":
        path.write_bytes(data[:middle] + b"\xff\xd9")
    elif how == "scan data overwritten":  # no 0xff: no marker, just wrong Huffman codes
        noise = rng.integers(0, 255, 64, dtype=np.uint8).tobytes()
        path.write_bytes(data[:middle] + noise + data[middle + 64 :])
    elif how == "opens, does not decode":  # 0xff bytes: markers PIL refuses mid-scan
        noise = rng.integers(0, 256, len(data) - 2 - start, dtype=np.uint8).tobytes()
        path.write_bytes(data[:start] + noise.replace(b"\xff", b"\xff\x55") + b"\xff\xd9")
    else:
        raise AssertionError(how)


def datamodule(root: Path, **overrides) -> VOCImageLabelsDataModule:
    settings = {"root": str(root), "train_split": "trainval", "val_split": "test"} | overrides
    return VOCImageLabelsDataModule(**settings)


@pytest.mark.parametrize("verify", ["header", "full"])
@pytest.mark.parametrize("how", ["truncated, end marker appended", "scan data overwritten"])
def test_corrupt_jpeg_that_pil_decodes_silently_is_found_at_setup(
    data_copy: Path, how: str, verify: str, caplog: pytest.LogCaptureFixture
) -> None:
    image = first_image(data_copy)
    damage_jpeg(image, how)
    read_rgb(image)  # PIL decodes it to half garbage without a word: the reason for this check
    with pytest.raises(DataError, match="JPEG is corrupt: Corrupt JPEG data") as caught:
        datamodule(data_copy, verify_images=verify).setup("fit")
    assert caught.value.path == image
    skipping = datamodule(data_copy, verify_images=verify, on_error="skip")
    with caplog.at_level(logging.WARNING):
        skipping.setup("fit")
    index = skipping.dataset("trainval", train=True).index
    total = len(read_image_set(data_copy / VOC, "trainval"))
    assert index.policy.skip_count == 1 and len(index) == total - 1
    assert image.stem not in {r.image_id for r in index.records}
    assert f"skipped 1 of {total} images of split 'trainval'" in caplog.text


def test_image_that_opens_but_does_not_decode_is_found_by_the_default_check(
    data_copy: Path,
) -> None:
    image = first_image(data_copy)
    damage_jpeg(image, "opens, does not decode")
    with Image.open(image) as opened:
        assert opened.format == "JPEG"  # the header is intact...
    with pytest.raises(DataError, match="cannot decode image"):
        read_rgb(image)  # ...but training would fail on it, in a DataLoader worker
    module = datamodule(data_copy)
    assert module.verify_images == "header"  # the default
    with pytest.raises(DataError, match="JPEG is corrupt") as caught:
        module.setup("fit")
    assert caught.value.path == image
    skipping = datamodule(data_copy, on_error="skip")
    skipping.setup("fit")
    dataset = skipping.dataset("trainval", train=True)
    assert dataset.index.policy.skip_count == 1
    assert all(dataset[i] is not None for i in range(len(dataset)))  # nothing fails later


def test_png_named_jpg_is_called_a_png(data_copy: Path) -> None:
    image = first_image(data_copy)
    with Image.open(image) as original:
        original.save(image, format="PNG")
    with pytest.raises(DataError, match="is a PNG image, not a JPEG") as caught:
        VOCIndex(data_copy, "trainval")
    assert caught.value.path == image


def test_camera_mpo_file_is_a_jpeg(data_copy: Path) -> None:
    image = first_image(data_copy)
    with Image.open(image) as original:
        frames = [original.copy(), original.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(image, format="MPO", save_all=True, append_images=frames[1:])
    with Image.open(image) as opened:
        assert opened.format == "MPO"
    for verify in ("header", "full"):
        index = VOCIndex(data_copy, "trainval", verify_images=verify)
        assert index[0].image_path == image


def test_16_bit_png_is_scaled_by_bit_depth_not_clipped(data_copy: Path, tmp_path: Path) -> None:
    grey16 = np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)
    png = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(png)
    with Image.open(png) as opened:
        assert opened.mode == "I;16"
    expected = np.array([0, 0, 1, 128, 255], dtype=np.uint8)
    pixels = np.asarray(read_rgb(png))
    assert pixels.shape == (1, 5, 3)
    assert (pixels == expected[None, :, None]).all()

    int32 = tmp_path / "int32.tif"  # mode I holding 16-bit values: scaled the same way
    Image.fromarray(grey16.astype(np.int32)).save(int32)
    assert (np.asarray(read_rgb(int32)) == expected[None, :, None]).all()
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(wide)
    with pytest.raises(DataError, match=r"values 0\.\.70000: its bit depth is unknown") as caught:
        read_rgb(wide)
    assert caught.value.path == wide
    floats = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.5]], dtype=np.float32)).save(floats)
    with pytest.raises(DataError, match="32-bit float image"):
        read_rgb(floats)

    # Training decodes with the same reader: a 16-bit image at mid grey stays mid grey.
    image = first_image(data_copy)
    with Image.open(image) as original:
        size = original.size
    Image.fromarray(np.full(size[::-1], 32768, dtype=np.uint16)).save(image, format="PNG")
    index = VOCIndex(data_copy, "trainval", verify_images="none")
    sample = VOCDataset(index)[0]
    assert sample["image_id"] == image.stem
    assert (sample["image"] == 128).all()


def test_train_entry_point_names_or_counts_a_corrupt_jpeg(data_copy: Path, tmp_path: Path) -> None:
    image = data_copy / VOC / "JPEGImages" / f"{read_image_set(data_copy / VOC, 'train')[0]}.jpg"
    damage_jpeg(image, "truncated, end marker appended")
    splits = [f"data.root={data_copy}", "data.train_split=train", "data.val_split=val"]
    with pytest.raises(DataError, match="JPEG is corrupt") as caught:
        train(compose_cfg("train", [*splits, "logger=none"], tmp_path / "raise"))
    assert caught.value.path == image
    skip = [*splits, "logger=none", "data.on_error=skip"]
    counts = train(compose_cfg("train", skip, tmp_path / "skip"))
    assert counts == {"images/fit": 11, "images/validate": 12, "images/test": 12}
