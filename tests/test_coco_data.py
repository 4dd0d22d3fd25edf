"""Data in COCO's layout: the reader (labels, crowds, ids, bad input) and its ground truth
scored by pycocotools exactly as the file itself."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from wsl.data.bad_input import DataError
from wsl.data.coco import COCOIndex
from wsl.data.coco_ground_truth import coco_ground_truth
from wsl.evaluation.coco_detection import COCO_METRICS, COCODetectionEvaluator, write_coco_json
from wsl.structures.boxes import inclusive_boxes

SPLIT = "val2017"
# Non-contiguous category ids, listed out of id order: the class order is the file's.
CATEGORIES = [
    {"id": 17, "name": "cat"},
    {"id": 3, "name": "car"},
    {"id": 90, "name": "tooth brush"},
]
IMAGES = [
    {"id": 42, "file_name": "a.jpg", "width": 64, "height": 48},
    {"id": 7, "file_name": "b.jpg", "width": 50, "height": 60},
    {"id": 1000, "file_name": "c.jpg", "width": 40, "height": 40},  # no annotation
]
ANNOTATIONS = [
    {
        "id": 1,
        "image_id": 42,
        "category_id": 17,
        "bbox": [10, 20, 30, 20],
        "area": 410.5,
        "iscrowd": 0,
    },
    {
        "id": 2,
        "image_id": 42,
        "category_id": 3,
        "bbox": [0, 0, 64, 48],
        "area": 2000.0,
        "iscrowd": 1,
    },
    {
        "id": 3,
        "image_id": 7,
        "category_id": 90,
        "bbox": [5.5, 6.25, 10, 12],
        "area": 100.0,
        "iscrowd": 0,
    },
    {
        "id": 4,
        "image_id": 7,
        "category_id": 17,
        "bbox": [20, 30, 29.6, 30.4],
        "area": 700.0,
        "iscrowd": 0,
    },
]


def write_coco(root: Path, data: dict[str, Any] | None = None) -> Path:
    """A COCO-layout data set under ``root``: the file and one small JPEG per image."""
    data = data or {"images": IMAGES, "annotations": ANNOTATIONS, "categories": CATEGORIES}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / SPLIT).mkdir(exist_ok=True)
    for image in data["images"]:
        size = (image["width"], image["height"])
        Image.new("RGB", size, (90, 120, 150)).save(root / SPLIT / image["file_name"])
    path = root / "annotations" / f"instances_{SPLIT}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def test_labels_crowds_ids_and_boxes(tmp_path: Path) -> None:
    write_coco(tmp_path)
    index = COCOIndex(tmp_path, SPLIT)
    assert index.classes == ("cat", "car", "tooth brush")
    assert index.category_ids == (17, 3, 90)
    assert [r.image_id for r in index] == ["42", "7", "1000"]
    assert index.coco_image_ids() == {"42": 42, "7": 7, "1000": 1000}
    # the crowd region labels its image (car) and is ignored in evaluation (difficult)
    np.testing.assert_array_equal(
        np.stack([r.labels for r in index]), [[1, 1, 0], [1, 0, 1], [0, 0, 0]]
    )
    crowd = index[0].annotation.objects[1]
    assert (crowd.name, crowd.difficult, crowd.box) == ("car", True, (0.0, 0.0, 63.0, 47.0))
    assert index[0].annotation.objects[0].box == (10.0, 20.0, 39.0, 39.0)  # x .. x + w - 1
    # 0.4 px past the 50x60 image's edge (float export): clipped to the last pixel row/column
    assert index[1].annotation.objects[1].box == (20.0, 30.0, 48.6, 59.0)
    assert (
        index.has_boxes
        and index.ground_truth_file == tmp_path / "annotations/instances_val2017.json"
    )


def test_data_classes_reorder_the_labels(tmp_path: Path) -> None:
    write_coco(tmp_path)
    index = COCOIndex(tmp_path, SPLIT, classes=["car", "cat", "tooth brush"])
    assert index.category_ids == (3, 17, 90)
    np.testing.assert_array_equal(index[0].labels, [1, 1, 0])
    np.testing.assert_array_equal(index[1].labels, [0, 1, 1])
    with pytest.raises(DataError, match=r"missing \['tooth brush'\], not in the file \['dog'\]"):
        COCOIndex(tmp_path, SPLIT, classes=["car", "cat", "dog"])


def test_ground_truth_scores_as_the_file_does(tmp_path: Path) -> None:
    """The reader's boxes, areas and crowds, given back as COCO ground truth, give pycocotools'
    own metrics on the original file (detections on the image without annotations included)."""
    path = write_coco(tmp_path)
    index = COCOIndex(tmp_path, SPLIT)
    rng = np.random.default_rng(0)
    detections = []
    for record in index:
        width, height = record.annotation.width, record.annotation.height
        truth = record.annotation.boxes()
        jitter = truth + rng.normal(0, 2, truth.shape)
        x1y1 = rng.uniform(0, [width / 2, height / 2], (4, 2))
        random = np.concatenate([x1y1, x1y1 + rng.uniform(4, 20, (4, 2))], axis=1)
        boxes = np.concatenate([jitter, random]).clip(0, [width - 1, height - 1] * 2)
        classes = np.concatenate(
            [record.annotation.class_indices(index.classes), rng.integers(0, 3, 4)]
        )
        detections.append((boxes, rng.uniform(0.1, 1, len(boxes)), classes))
    evaluator = COCODetectionEvaluator(
        coco_ground_truth(index), index.coco_image_ids(), index.category_ids
    )
    evaluator.process([r.image_id for r in index], detections)
    ours = evaluator.evaluate()
    results = write_coco_json(tmp_path / "results.json", evaluator.results())
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(path))
        cocoeval = COCOeval(truth, truth.loadRes(str(results)), "bbox")
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    theirs = dict(zip(COCO_METRICS, cocoeval.stats[:6], strict=True))
    assert ours["AP"] > 0.05  # the jittered truths score: a case where equality means something
    for name in COCO_METRICS:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-12) or (
            np.isnan(ours[name]) and theirs[name] == -1
        ), name
    # results are in the file's own ids and categories
    saved = json.loads(results.read_text())
    assert {r["image_id"] for r in saved} == {42, 7, 1000}
    assert {r["category_id"] for r in saved} <= {3, 17, 90}
    first = saved[0]
    record = next(r for r in index if r.image_id == str(first["image_id"]))
    k = next(i for i, d in enumerate(detections) if index[i] is record)
    order = np.argsort(-detections[k][1], kind="stable")
    np.testing.assert_allclose(
        inclusive_boxes(np.array(first["bbox"]))[0], detections[k][0][order[0]]
    )


def broken(change: str) -> dict[str, Any]:
    data = {"images": IMAGES, "annotations": ANNOTATIONS, "categories": CATEGORIES}
    data = copy.deepcopy(data)
    if change == "undeclared category":
        data["annotations"][2]["category_id"] = 5
    elif change == "duplicate image":
        data["images"].append(dict(data["images"][1]))
    elif change == "outside":
        data["annotations"][0]["bbox"] = [40, 20, 30, 20]
    elif change == "duplicate category":
        data["categories"].append({"id": 17, "name": "dog"})
    return data


@pytest.mark.parametrize(
    ("change", "message", "skipped"),
    [
        ("undeclared category", r"annotations\[2\] \(id 3, image 7\): category id 5 is used", 1),
        ("duplicate image", r"images\[3\]: image id 7 is listed twice", 1),
        ("outside", r"\(id 1, image 42\): bbox \[40, 20, 30, 20\] is outside the 64x48 image", 1),
    ],
)
def test_bad_entries_name_the_file_and_the_entry(
    tmp_path: Path, change: str, message: str, skipped: int
) -> None:
    path = write_coco(tmp_path, broken(change))
    with pytest.raises(DataError, match=message) as error:
        COCOIndex(tmp_path, SPLIT)
    assert error.value.path == path
    index = COCOIndex(tmp_path, SPLIT, on_error="skip")
    assert index.policy.skip_count == skipped
    assert len(index) == 3 - (change != "duplicate image")


def test_file_problems_stop_whatever_on_error_says(tmp_path: Path) -> None:
    write_coco(tmp_path, broken("duplicate category"))
    with pytest.raises(DataError, match=r"categories\[3\]: category id 17 is declared twice"):
        COCOIndex(tmp_path, SPLIT, on_error="skip")
    with pytest.raises(
        DataError, match=r"not found \(data.root's annotations/ has \['instances_val2017.json'\]\)"
    ):
        COCOIndex(tmp_path, "train2017")


def test_a_missing_image_file_is_named(tmp_path: Path) -> None:
    write_coco(tmp_path)
    (tmp_path / SPLIT / "b.jpg").unlink()
    with pytest.raises(DataError, match="image file does not exist") as error:
        COCOIndex(tmp_path, SPLIT)
    assert error.value.path == tmp_path / SPLIT / "b.jpg"
    assert [r.image_id for r in COCOIndex(tmp_path, SPLIT, on_error="skip")] == ["42", "1000"]


def test_a_file_without_annotations_has_no_boxes(tmp_path: Path) -> None:
    """COCO's image_info_test files list images only."""
    write_coco(tmp_path, {"images": IMAGES, "categories": CATEGORIES})
    index = COCOIndex(tmp_path, SPLIT)
    assert not index.has_boxes
    assert all(r.labels.sum() == 0 for r in index)
