"""VOC XML parsing, image sets, class lists and image-level labels, against hand-written files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsl.data.annotations import VOC_CLASSES, parse_voc_xml, read_class_list, read_image_set
from wsl.data.bad_input import BadInputPolicy, DataError
from wsl.data.labels import image_labels

XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>000005.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object>
    <name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
  </object>
  <object>
    <name>chair</name><pose>Unspecified</pose><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>500</xmax><ymax>375</ymax></bndbox>
  </object>
  <object>
    <name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>1</difficult>
    <bndbox><xmin>5</xmin><ymin>244</ymin><xmax>67</xmax><ymax>374</ymax></bndbox>
  </object>
</annotation>
"""


def write(tmp_path: Path, text: str, name: str = "000005.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse_every_field_and_convert_to_zero_based(tmp_path: Path) -> None:
    ann = parse_voc_xml(write(tmp_path, XML), VOC_CLASSES)
    assert (ann.image_id, ann.filename) == ("000005", "000005.jpg")
    assert (ann.width, ann.height, ann.depth, ann.segmented) == (500, 375, 3, False)
    assert [o.name for o in ann.objects] == ["chair", "chair", "dog"]
    assert ann.objects[0].box == (262.0, 210.0, 323.0, 338.0)
    assert ann.objects[1].box == (0.0, 0.0, 499.0, 374.0)  # the whole image, 1-based edges
    assert [o.difficult for o in ann.objects] == [False, True, True]
    assert [o.truncated for o in ann.objects] == [False, True, False]
    assert [o.pose for o in ann.objects] == ["Rear", "Unspecified", "Left"]
    np.testing.assert_array_equal(ann.class_indices(VOC_CLASSES), [8, 8, 11])
    np.testing.assert_array_equal(ann.difficult_mask(), [False, True, True])
    assert ann.boxes().shape == (3, 4) and ann.boxes().dtype == np.float32


def test_labels_positive_convention_counts_difficult_instances(tmp_path: Path) -> None:
    ann = parse_voc_xml(write(tmp_path, XML), VOC_CLASSES)
    labels, weights = image_labels(ann, VOC_CLASSES)
    assert np.flatnonzero(labels).tolist() == [8, 11]  # chair, dog (dog only difficult)
    assert weights.tolist() == [1.0] * 20


def test_labels_voc_convention_ignores_difficult_only_classes(tmp_path: Path) -> None:
    ann = parse_voc_xml(write(tmp_path, XML), VOC_CLASSES)
    labels, weights = image_labels(ann, VOC_CLASSES, difficult_labels="ignore")
    assert np.flatnonzero(labels).tolist() == [8]  # chair has an easy instance
    assert np.flatnonzero(weights == 0).tolist() == [11]  # dog: neither positive nor negative
    with pytest.raises(ValueError, match="difficult_labels"):
        image_labels(ann, VOC_CLASSES, difficult_labels="wrong")


def test_labels_authors_convention_makes_difficult_only_classes_negative(tmp_path: Path) -> None:
    """OICR's and PCL's code drops difficult objects before making labels."""
    ann = parse_voc_xml(write(tmp_path, XML), VOC_CLASSES)
    labels, weights = image_labels(ann, VOC_CLASSES, difficult_labels="negative")
    assert np.flatnonzero(labels).tolist() == [8]  # chair has an easy instance; dog is negative
    assert weights.tolist() == [1.0] * 20  # ... and counts, unlike "ignore"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "<size><width>500</width><height>375</height><depth>3</depth></size>",
            "",
            "missing <size>",
        ),
        ("<name>dog</name>", "<name>dragon</name>", "'dragon' is not in the class list"),
        ("<xmax>324</xmax>", "<xmax>501</xmax>", "outside the 500x375 image"),
        ("<xmin>263</xmin>", "<xmin>0</xmin>", "outside the 500x375 image"),
        ("<ymax>339</ymax>", "<ymax>200</ymax>", "empty or outside"),
        ("<width>500</width>", "<width>big</width>", "not a number"),
        ("</annotation>", "", "not valid XML"),
    ],
)
def test_bad_xml_names_the_file_and_the_problem(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in XML
    path = write(tmp_path, XML.replace(old, new))
    with pytest.raises(DataError, match=message) as caught:
        parse_voc_xml(path, VOC_CLASSES)
    assert str(path) in str(caught.value)


def test_missing_xml_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as caught:
        parse_voc_xml(tmp_path / "000001.xml", VOC_CLASSES)
    assert "000001.xml" in str(caught.value)


def test_image_sets_and_class_list(tmp_path: Path) -> None:
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("000005\n000007\n\n")
    assert read_image_set(tmp_path, "train") == ["000005", "000007"]
    with pytest.raises(DataError, match=r"image set 'val' not found \(available: \['train'\]\)"):
        read_image_set(tmp_path, "val")
    assert read_class_list(tmp_path) == VOC_CLASSES
    (tmp_path / "classes.txt").write_text("circle\nsquare\n")
    assert read_class_list(tmp_path) == ("circle", "square")
    (tmp_path / "classes.txt").write_text("circle\ncircle\n")
    with pytest.raises(DataError, match="duplicate"):
        read_class_list(tmp_path)


def test_skip_policy_counts_and_raise_policy_raises() -> None:
    error = DataError("a.jpg", "broken")
    with pytest.raises(DataError, match=r"a\.jpg: broken"):
        BadInputPolicy("raise").report(error)
    policy = BadInputPolicy("skip")
    policy.report(error)
    policy.report(error)
    assert policy.skip_count == 2
    with pytest.raises(ValueError, match="on_error"):
        BadInputPolicy("ignore")
