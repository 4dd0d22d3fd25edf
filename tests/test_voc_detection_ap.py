"""VOC detection AP against hand-computed cases and a literal loop transcription of the devkit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from wsl.evaluation.corloc import CorLocEvaluator
from wsl.evaluation.pointing import PointingGameEvaluator
from wsl.evaluation.voc_detection import (
    VOCDetectionEvaluator,
    voc_ap,
    voc_detection_ap,
    write_devkit_results,
)
from wsl.structures.boxes import voc_iou
from wsl.structures.detections import ImageDetections, ImageGroundTruth

CLASSES = ["cat", "dog", "bird", "cow"]


def dets(*rows: tuple[list[float], float, int]) -> tuple[torch.Tensor, ...]:
    """Detections of one image from ``(box, score, class)`` rows."""
    boxes = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(-1, 4)
    return boxes, torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])


def gts(*rows: tuple[list[float], int, bool]) -> tuple[torch.Tensor, ...]:
    """Ground truth of one image from ``(box, class, difficult)`` rows."""
    boxes = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(-1, 4)
    return boxes, torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])


# Three images. cat (0): two non-difficult GT (g1 in A, g3 in B) and a difficult one (g2 in A).
# dog (1): one GT, no detection. bird (2): detections, no GT. cow (3): a difficult GT only.
TOY_IDS = ["A", "B", "C"]
TOY_GT = [
    gts(([0, 0, 9, 9], 0, False), ([20, 20, 29, 29], 0, True), ([40, 40, 49, 49], 3, True)),
    gts(([0, 0, 19, 19], 0, False)),
    gts(([0, 0, 9, 9], 1, False)),
]
TOY_DETS = [
    dets(
        ([0, 0, 9, 9], 0.9, 0),  # d1: on g1 -> TP
        ([0, 0, 9, 9], 0.7, 0),  # d3: g1 again -> duplicate, FP
        ([20, 20, 29, 29], 0.6, 0),  # d4: on difficult g2 -> ignored
        ([0, 0, 9, 9], 0.8, 2),  # bird, no bird GT anywhere
        ([40, 40, 49, 49], 0.5, 3),  # cow, on the difficult-only cow GT -> ignored
    ),
    dets(
        ([30, 30, 39, 39], 0.8, 0),  # d2: touches nothing -> FP
        ([0, 0, 19, 19], 0.4, 0),  # d6: on g3 -> TP
    ),
    dets(([0, 0, 9, 9], 0.5, 0)),  # d5: a dog's box, but no cat GT in C -> FP
]
# cat in score order, ignored d4 left out: TP FP FP FP TP, 2 positives (g2 is difficult)
#   precision 1, 1/2, 1/3, 1/4, 2/5; recall 1/2, 1/2, 1/2, 1/2, 1
# 11-point: t = 0 .. 0.5 (6 thresholds) max precision 1; t = 0.6 .. 1 (5) max precision 2/5
#   AP = (6 * 1 + 5 * 2/5) / 11 = 8/11
# all-point: envelope 1 up to recall 1/2, then 2/5: AP = 1/2 * 1 + 1/2 * 2/5 = 7/10
CAT_PRECISION = [1, 1 / 2, 1 / 3, 1 / 4, 2 / 5]
CAT_RECALL = [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1]


def toy_records() -> tuple[list[ImageDetections], list[ImageGroundTruth]]:
    return [ImageDetections.of(*d) for d in TOY_DETS], [ImageGroundTruth.of(*g) for g in TOY_GT]


def test_iou_uses_the_plus_one_convention() -> None:
    # 10x10 boxes overlapping on columns 5..9: 50 / (100 + 100 - 50)
    assert voc_iou(np.array([0, 0, 9, 9]), np.array([5, 0, 14, 9])) == pytest.approx(50 / 150)
    # rows 0..4 of rows 0..9: 50 / 100 exactly (without +1 it would be 36 / 81)
    assert voc_iou(np.array([0, 0, 9, 9]), np.array([0, 0, 9, 4])) == 0.5
    assert voc_iou(np.array([0, 0, 9, 9]), np.array([10, 0, 19, 9])) == 0.0  # touching only
    matrix = voc_iou(np.array([[0, 0, 9, 9], [5, 0, 14, 9]])[:, None], np.array([[0, 0, 9, 9]]))
    assert matrix.shape == (2, 1) and matrix[:, 0].tolist() == pytest.approx([1, 1 / 3])


def test_toy_case_11_point_and_all_point() -> None:
    detections, ground_truths = toy_records()
    cat, dog, bird, cow = voc_detection_ap(detections, ground_truths, 4)
    assert cat.num_positives == 2  # the difficult cat is not a positive
    assert cat.precision.tolist() == pytest.approx(CAT_PRECISION)
    assert cat.recall.tolist() == pytest.approx(CAT_RECALL)
    assert cat.ap == pytest.approx(8 / 11)
    assert dog.ap == 0.0 and dog.precision.size == 0  # GT, no detection
    assert math.isnan(bird.ap) and bird.num_positives == 0  # detections, no GT
    assert math.isnan(cow.ap) and cow.precision.size == 0  # only difficult GT; det ignored
    all_point = voc_detection_ap(detections, ground_truths, 4, use_07_metric=False)
    assert all_point[0].ap == pytest.approx(7 / 10)


def test_evaluator_means_classes_with_positives() -> None:
    evaluator = VOCDetectionEvaluator(CLASSES)
    evaluator.process(TOY_IDS[:2], TOY_DETS[:2], TOY_GT[:2])
    evaluator.process(TOY_IDS[2:], TOY_DETS[2:], TOY_GT[2:])
    result = evaluator.evaluate()
    assert result["ap_per_class"]["cat"] == pytest.approx(8 / 11)
    assert result["ap_per_class"]["dog"] == 0.0
    assert math.isnan(result["ap_per_class"]["bird"]) and math.isnan(result["ap_per_class"]["cow"])
    assert result["mAP"] == pytest.approx((8 / 11 + 0) / 2)
    assert result["curves"]["cat"].recall.tolist() == pytest.approx(CAT_RECALL)

    evaluator.reset()
    assert math.isnan(evaluator.evaluate()["mAP"])  # nothing processed: no class has GT


def test_duplicate_image_ids_keep_the_first() -> None:
    evaluator = VOCDetectionEvaluator(CLASSES)
    evaluator.process(TOY_IDS, TOY_DETS, TOY_GT)
    evaluator.process(["A"], [dets()], [TOY_GT[0]])  # a sampler's padding, seen again
    assert evaluator.evaluate()["ap_per_class"]["cat"] == pytest.approx(8 / 11)


def test_detection_hitting_only_a_difficult_gt_is_neither_tp_nor_fp() -> None:
    ground_truth = [
        ImageGroundTruth.of(*gts(([0, 0, 9, 9], 0, True), ([50, 50, 59, 59], 0, False)))
    ]
    detection = [ImageDetections.of(*dets(([0, 0, 9, 9], 0.9, 0), ([50, 50, 59, 59], 0.1, 0)))]
    (result,) = voc_detection_ap(detection, ground_truth, 1)
    # Counted as FP, the first detection would make the precision [0, 1/2] and AP 1/2.
    assert result.precision.tolist() == [1.0] and result.recall.tolist() == [1.0]
    assert result.ap == pytest.approx(1.0)


def test_iou_threshold_is_inclusive_like_the_matlab_devkit() -> None:
    ground_truth = [ImageGroundTruth.of(*gts(([0, 0, 9, 9], 0, False)))]
    exactly_half = [ImageDetections.of(*dets(([0, 0, 9, 4], 0.9, 0)))]  # IoU 50/100
    above_half = [ImageDetections.of(*dets(([0, 0, 9, 5], 0.9, 0)))]  # IoU 60/100
    assert voc_detection_ap(exactly_half, ground_truth, 1)[0].ap == pytest.approx(1)
    assert voc_detection_ap(exactly_half, ground_truth, 1, iou_threshold=0.51)[0].ap == 0.0
    assert voc_detection_ap(above_half, ground_truth, 1)[0].ap == pytest.approx(1)


def test_equal_scores_keep_the_input_order() -> None:
    ground_truth = [ImageGroundTruth.of(*gts(([0, 0, 9, 9], 0, False)))]
    fp_first = [ImageDetections.of(*dets(([30, 30, 39, 39], 0.5, 0), ([0, 0, 9, 9], 0.5, 0)))]
    (result,) = voc_detection_ap(fp_first, ground_truth, 1)
    # FP then TP: precision 0, 1/2 at recall 0, 1 -> every threshold gets 1/2.
    assert result.precision.tolist() == [0.0, 0.5] and result.ap == pytest.approx(0.5)


def test_voc_ap_on_a_given_curve() -> None:
    recall = np.array([0.2, 0.4, 0.4, 0.8])
    precision = np.array([1.0, 0.5, 2 / 3, 0.5])
    # 11-point: t 0..0.4 (5) -> 1 at t 0..0.2 (3), 2/3 at 0.3, 0.4 (2); t 0.5..0.8 (4) -> 1/2;
    # t 0.9, 1 -> 0. AP = (3 + 4/3 + 2) / 11
    assert voc_ap(recall, precision) == pytest.approx((3 + 4 / 3 + 2) / 11)
    # all-point: 0.2 * 1 + 0.2 * 2/3 + 0.4 * 1/2
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.2 + 0.4 / 3 + 0.2)
    assert voc_ap(np.empty(0), np.empty(0)) == 0.0


def devkit_loop(
    detections: list[ImageDetections], ground_truths: list[ImageGroundTruth], c: int, use_07: bool
) -> float:
    """One class, one detection at a time, as voc_eval.py (ignored detections kept as 0, 0)."""
    image, box, score = [], [], []
    for i, d in enumerate(detections):
        for k in np.flatnonzero(d.classes == c):
            image.append(i), box.append(d.boxes[k]), score.append(d.scores[k])
    npos = sum(int(((g.classes == c) & ~g.difficult).sum()) for g in ground_truths)
    used = [np.zeros(len(g.classes), dtype=bool) for g in ground_truths]
    tp, fp = np.zeros(len(score)), np.zeros(len(score))
    for rank, d in enumerate(np.argsort(-np.array(score), kind="stable")):
        g = ground_truths[image[d]]
        bb, ovmax, jmax = box[d], -np.inf, -1
        for j in np.flatnonzero(g.classes == c):
            gt = g.boxes[j]
            iw = max(min(bb[2], gt[2]) - max(bb[0], gt[0]) + 1, 0)
            ih = max(min(bb[3], gt[3]) - max(bb[1], gt[1]) + 1, 0)
            union = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
            union += (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - iw * ih
            if iw * ih / union > ovmax:
                ovmax, jmax = iw * ih / union, j
        if ovmax >= 0.5:
            if not g.difficult[jmax]:
                if not used[image[d]][jmax]:
                    tp[rank], used[image[d]][jmax] = 1, True
                else:
                    fp[rank] = 1
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall, precision = tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return sum(
            (precision[recall >= t].max() if (recall >= t).any() else 0) / 11
            for t in np.arange(0.0, 1.1, 0.1)
        )
    mrec, mpre = np.r_[0, recall, 1], np.r_[0, precision, 0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def random_records(seed: int) -> tuple[list[ImageDetections], list[ImageGroundTruth]]:
    """Boxes on a coarse grid (many exact IoU ties and boundaries), tied scores, 3 classes."""
    rng = np.random.default_rng(seed)
    detections, ground_truths = [], []
    for _ in range(30):
        g = rng.integers(0, 4)
        corner = rng.integers(0, 6, (g, 2)) * 5
        gt_boxes = np.hstack([corner, corner + rng.integers(1, 4, (g, 2)) * 5 - 1])
        gt_classes = rng.integers(0, 3, g)
        k = rng.integers(0, 10)
        corner = rng.integers(0, 6, (k, 2)) * 5
        boxes = np.hstack([corner, corner + rng.integers(1, 4, (k, 2)) * 5 - 1])
        copies = rng.integers(0, max(g, 1), k)
        take = (rng.random(k) < 0.5) & (g > 0)
        boxes[take] = gt_boxes[copies[take]]
        classes = np.where(take, gt_classes[copies] if g else 0, rng.integers(0, 3, k))
        detections.append(ImageDetections.of(boxes, rng.integers(0, 5, k) / 4, classes))
        ground_truths.append(ImageGroundTruth.of(gt_boxes, gt_classes, rng.random(g) < 0.3))
    return detections, ground_truths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_devkit_loop_on_random_data(seed: int) -> None:
    detections, ground_truths = random_records(seed)
    for use_07 in (True, False):
        results = voc_detection_ap(detections, ground_truths, 3, use_07_metric=use_07)
        for c, result in enumerate(results):
            expected = devkit_loop(detections, ground_truths, c, use_07)
            assert result.ap == pytest.approx(expected, abs=1e-12), (seed, use_07, c)


def test_devkit_results_files_keep_full_precision_and_one_based_boxes(tmp_path: Path) -> None:
    detections = [
        (
            torch.tensor([[0.0, 0.0, 9.0, 9.0], [10.5, 20.0, 30.0, 40.0]]),
            torch.tensor([1.234567e-05, 0.5], dtype=torch.float64),
            torch.tensor([0, 1]),
        ),
        (torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.123456789]), torch.tensor([0])),
    ]
    paths = write_devkit_results(
        tmp_path, "test", ["cat", "dog", "bird"], ["000001", "000002"], detections
    )
    assert [p.name for p in paths] == [f"comp4_det_test_{c}.txt" for c in ("cat", "dog", "bird")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    cat = paths[0].read_text().splitlines()
    assert cat[0] == "000001 1.234567e-05 1.0 1.0 10.0 10.0"
    assert float(cat[0].split()[1]) == 1.234567e-05
    # a float32 score is written as the float64 it equals, so it reads back unchanged
    assert float(cat[1].split()[1]) == float(np.float32(0.123456789))
    assert cat[1].split()[2:] == ["2.0", "3.0", "4.0", "5.0"]
    assert paths[1].read_text() == "000001 0.5 11.5 21.0 31.0 41.0\n"
    assert paths[2].read_text() == ""

    with pytest.raises(ValueError, match="class indices"):
        write_devkit_results(tmp_path, "test", ["cat"], ["000001"], detections[:1])
    assert paths[1].read_text() == "000001 0.5 11.5 21.0 31.0 41.0\n"  # untouched


POINTS = [torch.tensor([[5.0, 5.0]] * 4), torch.tensor([[9.0, 30.0]] * 4), torch.zeros(4, 2)]


def single_process_results() -> dict:
    results = {}
    for name, evaluator, inputs in evaluators():
        evaluator.process(TOY_IDS, *inputs)
        results[name] = evaluator.evaluate()
    return results


def evaluators() -> list:
    return [
        ("voc", VOCDetectionEvaluator(CLASSES), (TOY_DETS, TOY_GT)),
        ("corloc", CorLocEvaluator(CLASSES), (TOY_DETS, TOY_GT)),
        ("pointing", PointingGameEvaluator(CLASSES), (POINTS, TOY_GT)),
    ]


def ddp_worker(rank: int, world_size: int, tmp: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world_size
    )
    # 3 images on 2 ranks: the sampler pads rank 1 with image A, which rank 0 also has.
    indices = list(DistributedSampler(range(3), world_size, rank, shuffle=False))
    results = {}
    for name, evaluator, inputs in evaluators():
        if rank == 1:  # the padded copy differs, so keeping it instead of rank 0's would show
            inputs = tuple(list(x) for x in inputs)
            inputs[0][0] = torch.full((4, 2), 500.0) if name == "pointing" else dets()
        evaluator.process([TOY_IDS[i] for i in indices], *([x[i] for i in indices] for x in inputs))
        results[name] = evaluator.evaluate()
    results["indices"] = indices
    for result in results.values():
        if isinstance(result, dict):
            result.pop("curves", None)
    Path(tmp, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def test_two_processes_gather_like_one(tmp_path: Path) -> None:
    mp.spawn(ddp_worker, args=(2, str(tmp_path)), nprocs=2)
    expected = single_process_results()
    expected["voc"].pop("curves")
    for rank in range(2):
        result = json.loads(Path(tmp_path, f"rank{rank}.json").read_text())
        assert result.pop("indices") == [[0, 2], [1, 0]][rank]
        np.testing.assert_equal(result, json.loads(json.dumps(expected)))
    assert result["voc"]["ap_per_class"]["cat"] == pytest.approx(8 / 11)
