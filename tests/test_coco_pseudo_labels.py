"""The COCO-format pseudo-label file: its geometry (0-based inclusive boxes to ``[x, y, w, h]``
and back, and to the VOC devkit's 1-based boxes), pycocotools reading it, and the errors a
damaged file gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from wsl.data.annotations import parse_voc_xml
from wsl.data.bad_input import DataError
from wsl.data.coco_pseudo_labels import (
    PseudoLabelImage,
    coco_bbox,
    inclusive_boxes,
    read_coco_pseudo_labels,
    write_coco_pseudo_labels,
)
from wsl.structures.boxes import voc_area, voc_iou
from wsl.structures.detections import ImageDetections

CLASSES = ("aeroplane", "bicycle", "bird", "dog")


def image(image_id: str, width: int, height: int, *rows) -> PseudoLabelImage:
    boxes = np.array([box for box, _, _ in rows], dtype=np.float64).reshape(-1, 4)
    labels = ImageDetections.of(boxes, [s for _, s, _ in rows], [c for _, _, c in rows])
    return PseudoLabelImage(image_id, width, height, labels)


IMAGES = [
    image(
        "000005",
        500,
        375,
        ([0.0, 0.0, 499.0, 374.0], 0.9, 3),  # the whole image
        ([47.0, 239.0, 194.0, 370.0], 1.2345678901234567e-4, 0),  # a score WSDDN would give
    ),
    image("2008_000002", 320, 240),  # no pseudo box: listed, with nothing in it
    image("000009", 100, 80, ([10.25, 3.5, 10.75, 79.0], 0.2, 2)),  # fractional, half a pixel
]


def test_coco_boxes_are_continuous_with_plus_one_sizes() -> None:
    boxes = np.array([[0.0, 0.0, 499.0, 374.0], [47.0, 239.0, 194.0, 370.0], [5, 5, 5, 5]])
    bboxes = coco_bbox(boxes)
    assert bboxes.tolist() == [[0, 0, 500, 375], [47, 239, 148, 132], [5, 5, 1, 1]]
    assert (bboxes[:, 2] * bboxes[:, 3]).tolist() == voc_area(boxes).tolist()
    assert inclusive_boxes(bboxes).tolist() == boxes.tolist()


def test_write_then_read_gives_the_same_boxes_scores_and_classes(tmp_path: Path) -> None:
    path = write_coco_pseudo_labels(tmp_path / "pseudo" / "trainval.json", IMAGES, CLASSES)
    back = read_coco_pseudo_labels(path, CLASSES)
    assert [(i.image_id, i.width, i.height) for i in back] == [
        ("000005", 500, 375),
        ("2008_000002", 320, 240),
        ("000009", 100, 80),
    ]
    for written, read in zip(IMAGES, back, strict=True):
        np.testing.assert_allclose(read.labels.boxes, written.labels.boxes, rtol=0, atol=1e-12)
        assert read.labels.scores.tolist() == written.labels.scores.tolist()  # full precision
        assert read.labels.classes.tolist() == written.labels.classes.tolist()
    assert back[0].labels.boxes.tolist() == IMAGES[0].labels.boxes.tolist()  # whole pixels: exact
    assert back[1].labels.boxes.shape == (0, 4)
    assert not list(tmp_path.glob("pseudo/.*"))  # the atomic write left no temporary file


def test_the_file_holds_what_coco_readers_expect(tmp_path: Path) -> None:
    path = write_coco_pseudo_labels(tmp_path / "trainval.json", IMAGES, CLASSES)
    document = json.loads(path.read_text())
    assert document["categories"] == [{"id": c + 1, "name": n} for c, n in enumerate(CLASSES)]
    assert document["images"][1] == {
        "id": 2,
        "file_name": "2008_000002.jpg",
        "width": 320,
        "height": 240,
    }
    assert document["annotations"][1] == {
        "id": 2,
        "image_id": 1,
        "category_id": 1,
        "bbox": [47.0, 239.0, 148.0, 132.0],
        "area": 148.0 * 132.0,
        "iscrowd": 0,
        "score": 1.2345678901234567e-4,
    }
    assert [a["id"] for a in document["annotations"]] == [1, 2, 3]


def test_a_devkit_box_round_trips_through_the_file(tmp_path: Path) -> None:
    # VOC2007 000001's dog, 1-based xmin=48 ymin=240 xmax=195 ymax=371, and a box of the whole
    # 353 x 500 image, xmin=1 .. xmax=353: COCO [0, 0, 353, 500], the image's full extent.
    xml = tmp_path / "000001.xml"
    xml.write_text(
        "<annotation><size><width>353</width><height>500</height><depth>3</depth></size>"
        "<object><name>dog</name><bndbox><xmin>48</xmin><ymin>240</ymin><xmax>195</xmax>"
        "<ymax>371</ymax></bndbox></object>"
        "<object><name>bird</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>353</xmax>"
        "<ymax>500</ymax></bndbox></object></annotation>"
    )
    parsed = parse_voc_xml(xml, CLASSES)
    labels = ImageDetections.of(parsed.boxes(), [1.0, 1.0], parsed.class_indices(CLASSES))
    path = write_coco_pseudo_labels(
        tmp_path / "p.json", [PseudoLabelImage("000001", 353, 500, labels)], CLASSES
    )
    bboxes = [a["bbox"] for a in json.loads(path.read_text())["annotations"]]
    assert bboxes == [[47, 239, 148, 132], [0, 0, 353, 500]]  # [xmin - 1, ymin - 1, w, h]
    (back,) = read_coco_pseudo_labels(path, CLASSES)
    devkit = back.labels.boxes + 1  # 1-based: x1 + 1 .. x2 + 1
    assert devkit.tolist() == [[48, 240, 195, 371], [1, 1, 353, 500]]


def test_pycocotools_reads_the_file_and_its_areas_agree(tmp_path: Path, capsys) -> None:
    path = write_coco_pseudo_labels(tmp_path / "trainval.json", IMAGES, CLASSES)
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert coco.loadImgs(3)[0]["file_name"] == "000009.jpg"
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    annotations = coco.loadAnns(coco.getAnnIds())
    boxes = np.concatenate([i.labels.boxes for i in IMAGES])
    assert [a["area"] for a in annotations] == pytest.approx(voc_area(boxes).tolist(), rel=1e-12)
    # loadRes computes a result's area as w * h (coco.py line 342): the same as the file's.
    keys = ("image_id", "category_id", "bbox", "score")
    results = coco.loadRes([{k: a[k] for k in keys} for a in annotations])
    assert [results.anns[i]["area"] for i in sorted(results.anns)] == [
        a["area"] for a in annotations
    ]
    # The pseudo boxes scored as detections against themselves: every one matched (ids from 1).
    evaluation = COCOeval(coco, results, "bbox")
    evaluation.params.areaRng = [[0, 1e10]]
    evaluation.params.areaRngLbl = ["all"]
    evaluation.evaluate()
    evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all recalls and classes
    assert precision[:, [0, 2, 3]] == pytest.approx(1.0, abs=1e-12)  # (bicycle has no box)
    assert np.all(precision[:, 1] == -1)
    capsys.readouterr()


def test_pycocotools_iou_of_the_coco_boxes_is_the_devkit_iou_of_the_inclusive_ones() -> None:
    boxes = np.array([[0.0, 0.0, 9.0, 9.0], [4.0, 0.0, 13.0, 9.0], [5.0, 5.0, 5.0, 5.0]])
    coco_iou = coco_mask.iou(coco_bbox(boxes), coco_bbox(boxes), [0, 0, 0])
    devkit_iou = voc_iou(boxes[:, None], boxes[None])
    np.testing.assert_allclose(coco_iou, devkit_iou, rtol=1e-12)
    assert devkit_iou[0, 1] == pytest.approx(60 / 140)  # 6 x 10 of two 10 x 10 boxes


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (image("../x", 10, 10), "not a plain name"),
        (image("000005", 10, 10), "listed twice"),
        (image("a", 0, 10), "not positive"),
        (image("a", 10, 10, ([0.0, 0.0, 10.0, 5.0], 0.5, 0)), "outside the 10x10 image"),
        (image("a", 10, 10, ([-0.5, 0.0, 5.0, 5.0], 0.5, 0)), "outside the 10x10 image"),
        (image("a", 10, 10, ([5.0, 0.0, 3.0, 5.0], 0.5, 0)), "size -1 x 6 is not positive"),
        (image("a", 10, 10, ([0.0, 0.0, 5.0, 5.0], 0.5, 4)), "class 4 is not in the 4 classes"),
        (image("a", 10, 10, ([0.0, 0.0, 5.0, 5.0], float("nan"), 0)), "not finite"),
    ],
)
def test_writing_refuses_what_could_not_be_read_back(
    tmp_path: Path, bad: PseudoLabelImage, message: str
) -> None:
    path = write_coco_pseudo_labels(tmp_path / "p.json", IMAGES, CLASSES)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=message):
        write_coco_pseudo_labels(path, [IMAGES[0], bad], CLASSES)
    assert path.read_bytes() == before  # the old file is untouched


def damaged(document: dict, change: str) -> str:
    """The file's text after ``change`` (a small edit of the document, named in the test)."""
    images, annotations, categories = (
        document["images"],
        document["annotations"],
        document["categories"],
    )
    if change == "unknown category":
        categories[1]["name"] = "zebra"
    elif change == "duplicate category id":
        categories[1]["id"] = 1
    elif change == "duplicate category name":
        categories[1]["name"] = "aeroplane"
    elif change == "duplicate image id":
        images[1]["id"] = 1
    elif change == "duplicate file_name":
        images[1]["file_name"] = "000005.jpg"
    elif change == "duplicate annotation id":
        annotations[2]["id"] = 1
    elif change == "file_name outside JPEGImages":
        images[0]["file_name"] = "../000005.jpg"
    elif change == "file_name not a jpg":
        images[0]["file_name"] = "000005.png"
    elif change == "width not an integer":
        images[0]["width"] = "500"
    elif change == "height a float":
        images[0]["height"] = 375.5
    elif change == "width a boolean":
        images[0]["width"] = True
    elif change == "bbox outside the image":
        annotations[0]["bbox"] = [0, 0, 501, 375]
    elif change == "bbox at a negative x":
        annotations[0]["bbox"] = [-1, 0, 10, 10]
    elif change == "negative width":
        annotations[0]["bbox"] = [10, 10, -5, 10]
    elif change == "zero height":
        annotations[0]["bbox"] = [10, 10, 5, 0]
    elif change == "bbox of three values":
        annotations[0]["bbox"] = [10, 10, 5]
    elif change == "non-numeric bbox":
        annotations[0]["bbox"] = [10, "10", 5, 5]
    elif change == "infinite bbox":
        annotations[0]["bbox"] = [10, 10, 5, 1e999]
    elif change == "overflowing bbox":
        annotations[0]["bbox"] = [10, 10, 5, "HUGE"]
        return json.dumps(document).replace('"HUGE"', "1e999")  # json reads inf, not an error
    elif change == "no score":
        del annotations[0]["score"]
    elif change == "score as text":
        annotations[0]["score"] = "0.9"
    elif change == "NaN score":
        annotations[0]["score"] = float("nan")
    elif change == "unknown image_id":
        annotations[0]["image_id"] = 7
    elif change == "unknown category_id":
        annotations[0]["category_id"] = 9
    elif change == "crowd box":
        annotations[0]["iscrowd"] = 1
    elif change == "negative area":
        annotations[0]["area"] = -3
    elif change == "no images":
        del document["images"]
    elif change == "annotation not an object":
        annotations[0] = [1, 2]
    else:
        raise AssertionError(change)
    return json.dumps(document)  # NaN and 1e999 (inf) are written as NaN and Infinity


DAMAGE = {
    "unknown category": r"categories\[1\]: unknown category 'zebra': not in the class list",
    "duplicate category id": r"categories\[1\]: duplicate id 1 \(also categories\[0\]\)",
    "duplicate category name": r"categories\[1\]: duplicate category 'aeroplane'",
    "duplicate image id": r"images\[1\]: duplicate id 1 \(also images\[0\]\)",
    "duplicate file_name": r"images\[1\]: duplicate file_name '000005.jpg'",
    "duplicate annotation id": r"annotations\[2\]: duplicate id 1 \(also annotations\[0\]\)",
    "file_name outside JPEGImages": r"images\[0\]: file_name '\.\./000005\.jpg'.*path separator",
    "file_name not a jpg": r"images\[0\]: file_name '000005.png'.*does not end with \.jpg",
    "width not an integer": r"images\[0\]: width '500' is not a whole number",
    "height a float": r"images\[0\]: height 375.5 is not a whole number",
    "width a boolean": r"images\[0\]: width True is not a whole number",
    "bbox outside the image": r"annotations\[0\]: .* of image '000005': it reaches outside the "
    r"500x375 image",
    "bbox at a negative x": "reaches outside the 500x375 image",
    "negative width": r"annotations\[0\]: .*size -5 x 10 is not positive",
    "zero height": r"size 5 x 0 is not positive",
    "bbox of three values": r"bbox \[10, 10, 5\] is not a list \[x, y, w, h\]",
    "non-numeric bbox": r"annotations\[0\]: bbox .* value '10' is not a number",
    "infinite bbox": r"not valid JSON \(Infinity is not a number",
    "overflowing bbox": r"annotations\[0\]: bbox .* value inf is not a finite number",
    "no score": r"annotations\[0\] has no 'score'",
    "score as text": r"annotations\[0\]: score '0.9' is not a number",
    "NaN score": r"not valid JSON \(NaN is not a number",
    "unknown image_id": r"annotations\[0\]: image_id 7 is not the id of any image",
    "unknown category_id": r"annotations\[0\]: category_id 9 is not the id of any category",
    "crowd box": r"annotations\[0\]: iscrowd 1",
    "negative area": r"annotations\[0\]: area -3 is negative",
    "no images": r"'images' is missing or not a list: not a COCO-format file",
    "annotation not an object": r"annotations\[0\] is not an object",
}


@pytest.mark.parametrize("change", DAMAGE)
def test_a_damaged_file_is_named_with_its_problem(tmp_path: Path, change: str) -> None:
    path = write_coco_pseudo_labels(tmp_path / "trainval.json", IMAGES, CLASSES)
    path.write_text(damaged(json.loads(path.read_text()), change))
    with pytest.raises(DataError, match=DAMAGE[change]) as caught:
        read_coco_pseudo_labels(path, CLASSES)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"images": [], "images": [], "annotations": [], "categories": []}', "more than once"),
        (b'{"images": [], "annotations": [], "categories": []} \xff', "not UTF-8"),
    ],
)
def test_a_file_that_is_not_coco_json_is_named(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "trainval.json"
    path.write_bytes(text)
    with pytest.raises(DataError, match=message) as caught:
        read_coco_pseudo_labels(path, CLASSES)
    assert caught.value.path == path


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_coco_pseudo_labels(tmp_path / "absent.json", CLASSES)


def test_categories_are_matched_by_name_in_any_order(tmp_path: Path) -> None:
    path = write_coco_pseudo_labels(tmp_path / "p.json", IMAGES, CLASSES)
    document = json.loads(path.read_text())
    document["categories"] = document["categories"][::-1]  # the same ids and names, reversed
    path.write_text(json.dumps(document))
    back = read_coco_pseudo_labels(path, CLASSES)
    assert back[0].labels.classes.tolist() == [3, 0]
    # Another class order for the same names: the indices follow the names.
    back = read_coco_pseudo_labels(path, ("dog", "bird", "bicycle", "aeroplane"))
    assert back[0].labels.classes.tolist() == [0, 3]
