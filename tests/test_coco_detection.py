"""COCO detection metrics: the evaluator against pycocotools run directly on JSON files, hand-
computed APs, the box conversion, the 100-detection cap and the no-detection case."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from wsl.evaluation.coco_detection import COCO_METRICS, COCODetectionEvaluator, write_coco_json
from wsl.structures.boxes import coco_bbox

CATEGORY_IDS = [3, 17]  # class 0 -> category 3, class 1 -> category 17
IMAGE_IDS = {"img_a": 5, "img_b": 9, "img_c": 12}

# Image 5: a small and a large object and a medium crowd region; image 9: a large and two
# small objects; image 12: nothing. Medium objects exist only as a crowd: APm is NaN.
GROUND_TRUTH = {
    "images": [
        {"id": 5, "file_name": "img_a.jpg", "width": 640, "height": 480},
        {"id": 9, "file_name": "img_b.jpg", "width": 640, "height": 480},
        {"id": 12, "file_name": "img_c.jpg", "width": 640, "height": 480},
    ],
    "annotations": [
        {"id": 1, "image_id": 5, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400,
         "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 17, "bbox": [100, 100, 200, 150],
         "area": 30000, "iscrowd": 0},
        {"id": 3, "image_id": 5, "category_id": 3, "bbox": [300, 200, 50, 40], "area": 2000,
         "iscrowd": 1},
        {"id": 4, "image_id": 9, "category_id": 17, "bbox": [50, 60, 120, 110],
         "area": 13200, "iscrowd": 0},
        {"id": 5, "image_id": 9, "category_id": 3, "bbox": [400, 300, 25, 20], "area": 500,
         "iscrowd": 0},
        {"id": 6, "image_id": 9, "category_id": 17, "bbox": [0, 0, 15, 12], "area": 180,
         "iscrowd": 0},
    ],
    "categories": [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}],
}  # fmt: skip
PRISTINE_GROUND_TRUTH = json.dumps(GROUND_TRUTH)  # taken before any test can change it

# (boxes x1 y1 x2 y2 inclusive, scores, classes) per image
DETECTIONS = {
    "img_a": (
        [
            [10, 10, 29, 29],  # exactly annotation 1
            [102, 98, 299, 251],  # close to annotation 2
            [305, 205, 344, 234],  # inside the crowd region: ignored
            [12, 12, 31, 31],  # duplicate of annotation 1: FP
            [100, 100, 299, 249],  # annotation 2's box, wrong class: FP
        ],
        [0.9, 0.8, 0.95, 0.5, 0.3],
        [0, 1, 0, 0, 0],
    ),
    "img_b": (
        [
            [55, 65, 164, 164],  # annotation 4, IoU 0.83
            [395, 295, 419, 314],  # annotation 5, IoU 0.43: FP
            [0, 0, 14, 11],  # exactly annotation 6
        ],
        [0.7, 0.6, 0.4],
        [1, 0, 1],
    ),
    "img_c": ([[200, 200, 259, 239], [10, 10, 19, 19]], [0.85, 0.2], [1, 0]),  # both FP
}


def _evaluator(
    ground_truth: dict = GROUND_TRUTH, image_ids: dict[str, int] = IMAGE_IDS, **kwargs: int
) -> COCODetectionEvaluator:
    return COCODetectionEvaluator(ground_truth, image_ids, CATEGORY_IDS, **kwargs)


def _process(evaluator: COCODetectionEvaluator, images: list[str]) -> None:
    detections = [tuple(np.asarray(v) for v in DETECTIONS[i]) for i in images]
    evaluator.process(images, detections)


def _pycocotools_direct(gt_file: Path, results_file: Path, img_ids: list[int] | None) -> list:
    """stats[0:6] of pycocotools run on the two files, as its README shows."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(results_file))
        evaluation = COCOeval(gt, dt, "bbox")
        if img_ids is not None:
            evaluation.params.imgIds = img_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(v) for v in evaluation.stats[:6]]


def _same(metrics: dict[str, float], stats: list[float]) -> bool:
    expected = [math.nan if v == -1 else v for v in stats]
    return all(
        (math.isnan(m) and math.isnan(e)) or m == e
        for m, e in zip([metrics[k] for k in COCO_METRICS], expected, strict=True)
    )


def test_metrics_equal_pycocotools_on_json_files(tmp_path: Path) -> None:
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(GROUND_TRUTH))
    evaluator = _evaluator()
    _process(evaluator, ["img_a", "img_b", "img_c"])
    metrics = evaluator.evaluate()
    results_file = write_coco_json(tmp_path / "results.json", evaluator.results())

    stats = _pycocotools_direct(gt_file, results_file, None)
    assert list(metrics) == list(COCO_METRICS)
    assert _same(metrics, stats), (metrics, stats)
    assert 0 < metrics["AP"] < 1 and 0 < metrics["APs"] < 1 and 0 < metrics["APl"] < 1
    assert math.isnan(metrics["APm"])  # medium: only the crowd region


def test_only_processed_images_are_evaluated(tmp_path: Path) -> None:
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(GROUND_TRUTH))
    evaluator = _evaluator()
    _process(evaluator, ["img_c", "img_a"])
    metrics = evaluator.evaluate()
    results_file = write_coco_json(tmp_path / "results.json", evaluator.results())

    assert _same(metrics, _pycocotools_direct(gt_file, results_file, [5, 12]))
    assert not _same(metrics, _pycocotools_direct(gt_file, results_file, None))


def test_ground_truth_untouched_and_summary_logged(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    ground_truth = copy.deepcopy(GROUND_TRUTH)
    evaluator = _evaluator(ground_truth)
    _process(evaluator, ["img_a", "img_b"])
    with caplog.at_level(logging.INFO, logger="wsl.evaluation.coco_detection"):
        first = evaluator.evaluate()
        second = evaluator.evaluate()
    assert ground_truth == GROUND_TRUTH == json.loads(PRISTINE_GROUND_TRUTH)
    assert _same(first, [second[k] for k in COCO_METRICS])
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in caplog.text
    assert capsys.readouterr().out == ""


def _one_image_gt(bboxes: list[list[float]]) -> dict:
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": 3, "bbox": b, "area": b[2] * b[3],
         "iscrowd": 0}
        for i, b in enumerate(bboxes)
    ]  # fmt: skip
    return {
        "images": [{"id": 1, "width": 300, "height": 300}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}],
    }


def _evaluate_one_image(gt_bboxes: list[list[float]], boxes: list, scores: list) -> dict:
    evaluator = COCODetectionEvaluator(_one_image_gt(gt_bboxes), {"x": 1}, CATEGORY_IDS)
    evaluator.process(["x"], [(np.array(boxes), np.array(scores), np.zeros(len(scores)))])
    return evaluator.evaluate()


def test_hand_computed_ap() -> None:
    # One large GT (100 x 100). Sorted by score: a FP, then a TP at IoU 6200 / 10000 = 0.62.
    # Precision [0, 1/2], recall [0, 1]; COCO's envelope makes precision [1/2, 1/2], and at
    # every one of the 101 recall thresholds (0 included) the precision is 1/2. IoU 0.62 is
    # a match at thresholds 0.50, 0.55, 0.60 only: AP = 3 * 0.5 / 10.
    metrics = _evaluate_one_image(
        [[0, 0, 100, 100]], [[200, 200, 249, 249], [0, 0, 99, 61]], [0.9, 0.8]
    )
    assert metrics["AP50"] == 0.5
    assert metrics["AP75"] == 0.0
    assert metrics["AP"] == pytest.approx(0.15, abs=1e-12)
    # In the large range the FP (50 x 50, medium) is unmatched and out of range: ignored, so
    # precision is 1 at every threshold where the TP matches.
    assert metrics["APl"] == pytest.approx(0.3, abs=1e-12)
    assert math.isnan(metrics["APs"]) and math.isnan(metrics["APm"])


def test_hand_computed_101_point_interpolation() -> None:
    # Two GT; a TP, a FP, a TP: precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]. Recall
    # thresholds 0.00 .. 0.50 (51 of them) take precision 1, 0.51 .. 1.00 (50) take 2/3
    # (VOC's area under the envelope would give 0.8333).
    metrics = _evaluate_one_image(
        [[0, 0, 100, 100], [150, 150, 100, 100]],
        [[0, 0, 99, 99], [0, 150, 99, 249], [150, 150, 249, 249]],
        [0.9, 0.8, 0.7],
    )
    assert metrics["AP50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    assert metrics["AP"] == pytest.approx(metrics["AP50"], abs=1e-12)  # all matches at IoU 1


def test_perfect_detection() -> None:
    # 1.0 up to pycocotools' precision tp / (fp + tp + np.spacing(1)): 1 / (1 + 2.2e-16)
    metrics = _evaluate_one_image([[10, 20, 30, 40]], [[10, 20, 39, 59]], [0.5])
    for name in ("AP", "AP50", "AP75", "APm"):
        assert metrics[name] == pytest.approx(1.0, abs=1e-15)


def test_box_conversion_and_results_round_trip(tmp_path: Path) -> None:
    assert coco_bbox(np.array([[0, 0, 9, 9]])).tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert coco_bbox(np.array([1.5, 2.25, 10.5, 20.75])).tolist() == [[1.5, 2.25, 10.0, 19.5]]

    scores = np.array([0.1 + 0.2, 1 / 3, np.float32(0.7)], dtype=np.float64)
    boxes = np.array([[0.1, 0.2, 10.3, 20.7], [1, 2, 3, 4], [5.5, 6.25, 100.125, 200]])
    evaluator = _evaluator()
    evaluator.process(["img_b"], [(boxes, scores, np.array([0, 1, 0]))])
    results = evaluator.results()
    assert [r["score"] for r in results] == [float(np.float32(0.7)), 1 / 3, 0.1 + 0.2]
    assert results[1] == {"image_id": 9, "category_id": 17, "bbox": [1, 2, 3, 3], "score": 1 / 3}
    assert results[2]["bbox"] == [0.1, 0.2, 10.3 - 0.1 + 1, 20.7 - 0.2 + 1]
    path = write_coco_json(tmp_path / "sub" / "results.json", results)
    assert json.loads(path.read_text()) == results


def test_at_most_max_detections_per_image() -> None:
    rng = np.random.default_rng(0)
    scores = rng.permutation(150) / 150.0
    boxes = np.tile([[10.0, 10.0, 50.0, 50.0]], (150, 1))
    evaluator = _evaluator()
    evaluator.process(
        ["img_a", "img_b"],
        [(boxes, scores, np.arange(150) % 2), (boxes[:3], scores[:3], np.zeros(3))],
    )
    results = evaluator.results()
    kept = [r["score"] for r in results if r["image_id"] == 5]
    assert kept == sorted(scores.tolist(), reverse=True)[:100]
    assert len([r for r in results if r["image_id"] == 9]) == 3
    evaluator.evaluate()


def test_no_detections() -> None:
    evaluator = _evaluator()
    empty = (np.empty((0, 4)), np.empty(0), np.empty(0))
    evaluator.process(["img_a", "img_b", "img_c"], [empty, empty, empty])
    assert evaluator.results() == []
    metrics = evaluator.evaluate()
    assert [metrics[k] for k in ("AP", "AP50", "AP75", "APs", "APl")] == [0.0] * 5
    assert math.isnan(metrics["APm"])


def test_bad_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="not in the ground truth's images"):
        _evaluator(image_ids={"img_a": 99})
    zero_id = _one_image_gt([[0, 0, 5, 5]])
    zero_id["annotations"][0]["id"] = 0
    with pytest.raises(ValueError, match="id 0"):
        _evaluator(zero_id, image_ids={"x": 1})
    evaluator = _evaluator()
    with pytest.raises(ValueError, match="without a COCO image id"):
        evaluator.process(["nope"], [(np.zeros((1, 4)), np.ones(1), np.zeros(1))])
    with pytest.raises(ValueError, match="class indices"):
        evaluator.process(["img_a"], [(np.zeros((1, 4)), np.ones(1), np.full(1, 2))])
