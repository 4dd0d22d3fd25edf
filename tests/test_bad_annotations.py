"""Annotations and image sets that used to get through, damaged on disk and read by the
datamodule's setup: a ``<filename>`` naming another image, non-finite and fractional
coordinates, duplicate ids, byte-order marks and other invisible characters."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsl.data.annotations import read_image_set
from wsl.data.bad_input import DataError
from wsl.data.datamodule import VOCImageLabelsDataModule
from wsl.data.voc import VOCIndex

VOC = Path("VOCdevkit/VOC2007")


def datamodule(root: Path, **overrides) -> VOCImageLabelsDataModule:
    settings = {"root": str(root), "train_split": "trainval", "val_split": "test"} | overrides
    return VOCImageLabelsDataModule(**settings)


def trainval_index(module: VOCImageLabelsDataModule) -> VOCIndex:
    module.setup("fit")
    return module.dataset("trainval", train=True).index


def first_xml(root: Path) -> Path:
    return root / VOC / "Annotations" / f"{read_image_set(root / VOC, 'trainval')[0]}.xml"


def replace_first(path: Path, tag: str, value: str) -> None:
    text = path.read_text()
    old = text.split(f"<{tag}>")[1].split(f"</{tag}>")[0]
    path.write_text(text.replace(f"<{tag}>{old}</{tag}>", f"<{tag}>{value}</{tag}>", 1))


def assert_named_then_skipped(root: Path, culprit: Path, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        datamodule(root).setup("fit")
    assert caught.value.path == culprit
    index = trainval_index(datamodule(root, on_error="skip"))
    total = len(read_image_set(root / VOC, "trainval"))
    assert index.policy.skip_count == 1 and len(index) == total - 1
    assert culprit.stem not in {r.image_id for r in index.records}


def test_filename_naming_another_image_is_rejected(data_copy: Path) -> None:
    xml = first_xml(data_copy)
    image = data_copy / VOC / "JPEGImages" / f"{xml.stem}.jpg"
    with Image.open(image) as original:  # another image of the very same size
        Image.new("RGB", original.size).save(image.with_name("other.jpg"))
    replace_first(xml, "filename", "other.jpg")
    message = rf"<filename> is 'other.jpg' but this annotation is of id '{xml.stem}'"
    assert_named_then_skipped(data_copy, xml, message)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_non_finite_coordinate_is_named_or_skipped(data_copy: Path, value: str) -> None:
    xml = first_xml(data_copy)
    replace_first(xml, "xmax", value)
    assert_named_then_skipped(data_copy, xml, rf"<xmax> is not a finite number: '{value}'")


def test_non_integer_size_is_rejected(data_copy: Path) -> None:
    xml = first_xml(data_copy)
    text = xml.read_text()
    width = text.split("<width>")[1].split("</width>")[0]
    replace_first(xml, "width", f"{width}.5")
    assert_named_then_skipped(data_copy, xml, rf"<width> is not a whole number: {width}\.5")


def test_fractional_coordinates_are_kept_and_logged_once_per_file(
    data_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    xml = first_xml(data_copy)
    text = xml.read_text()
    xmin = int(text.split("<xmin>")[1].split("</xmin>")[0])
    ymin = int(text.split("<ymin>")[1].split("</ymin>")[0])
    replace_first(xml, "xmin", f"{xmin}.5")
    replace_first(xml, "ymin", f"{ymin}.25")
    with caplog.at_level(logging.WARNING, logger="wsl.data.annotations"):
        index = trainval_index(datamodule(data_copy))
    record = next(r for r in index.records if r.image_id == xml.stem)
    # 1-based 12.5 is 0-based 11.5: kept, not truncated to 11.
    np.testing.assert_allclose(record.annotation.boxes()[0, :2], [xmin - 0.5, ymin - 0.75])
    warnings = [r.getMessage() for r in caplog.records if r.name == "wsl.data.annotations"]
    assert warnings == [
        f"{xml}: box coordinates that are not whole pixels "
        f"(xmin={xmin}.5, ymin={ymin}.25); kept as they are"
    ]


def test_duplicate_ids_are_named_with_their_lines(data_copy: Path) -> None:
    image_set = data_copy / VOC / "ImageSets" / "Main" / "trainval.txt"
    ids = read_image_set(data_copy / VOC, "trainval")
    image_set.write_text("\n".join([*ids, ids[3], ids[0]]) + "\n")
    n = len(ids)
    message = rf"ids listed more than once: {ids[3]} \(lines 4 and {n + 1}\), {ids[0]} \(lines 1"
    for on_error in ("raise", "skip"):  # a broken list is not one bad image
        with pytest.raises(DataError, match=message) as caught:
            datamodule(data_copy, on_error=on_error).setup("fit")
        assert caught.value.path == image_set


def test_byte_order_mark_is_stripped(data_copy: Path) -> None:
    image_set = data_copy / VOC / "ImageSets" / "Main" / "trainval.txt"
    ids = read_image_set(data_copy / VOC, "trainval")
    image_set.write_bytes(("\n".join(ids) + "\n").encode("utf-8-sig"))
    classes = data_copy / VOC / "classes.txt"
    classes.write_bytes(classes.read_text().encode("utf-8-sig"))
    index = trainval_index(datamodule(data_copy))
    assert [r.image_id for r in index.records] == ids
    assert index.classes[0].isprintable()


@pytest.mark.parametrize("character", ["\u200b", "\x00", "\ufeff"])
def test_other_invisible_characters_are_named(data_copy: Path, character: str) -> None:
    image_set = data_copy / VOC / "ImageSets" / "Main" / "trainval.txt"
    ids = read_image_set(data_copy / VOC, "trainval")
    ids[2] = ids[2] + character
    image_set.write_text("\n".join(ids) + "\n")
    with pytest.raises(DataError, match=r"line 3: id .* has a non-printable character") as caught:
        datamodule(data_copy).setup("fit")
    assert caught.value.path == image_set
    assert repr(ids[2]) in str(caught.value)
