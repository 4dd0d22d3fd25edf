"""Classification mAP and metric2 against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from wsl.evaluation.classification import (
    METRIC2,
    MultilabelClassificationMetrics,
    classification_map,
    f_beta,
    macro_recall,
    metric2,
)

# 3 images x 3 classes. Class 2 has no positive: left out of every mean.
SCORES = torch.tensor([[0.9, 0.6, 0.1], [0.6, 0.8, 0.3], [0.4, 0.7, 0.2]])
LABELS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
# Class 0 ranks +, -, +: AP = (1/1 + 2/3) / 2 = 5/6. Class 1 ranks +, +, -: AP = 1.
AP_0, AP_1 = 5 / 6, 1.0


def test_map_averages_classes_with_a_positive_and_gives_nan_to_the_others() -> None:
    mean_ap, per_class = classification_map(SCORES, LABELS)
    assert per_class[:2].tolist() == pytest.approx([AP_0, AP_1])
    assert math.isnan(per_class[2])
    assert mean_ap == pytest.approx((AP_0 + AP_1) / 2)


def test_weight_zero_entries_are_left_out_of_their_class() -> None:
    weights = torch.ones(3, 3)
    weights[1, 0] = 0  # the negative ranked between class 0's positives: class 0 AP becomes 1
    weights[2, 1] = 0  # one of class 1's two positives: still AP 1
    mean_ap, per_class = classification_map(SCORES, LABELS, weights)
    assert per_class[:2].tolist() == pytest.approx([1.0, 1.0])
    assert mean_ap == pytest.approx(1.0)
    weights[0, 0] = weights[2, 0] = 0  # no counted positive left: class 0 is absent
    mean_ap, per_class = classification_map(SCORES, LABELS, weights)
    assert math.isnan(per_class[0]) and mean_ap == pytest.approx(1.0)


def test_no_positive_anywhere_gives_nan() -> None:
    mean_ap, per_class = classification_map(SCORES, torch.zeros(3, 3))
    assert math.isnan(mean_ap) and per_class.isnan().all()


def test_macro_recall_counts_present_classes_only() -> None:
    # Positive means score > 0.5. Class 0: 0.9 yes, 0.4 no -> 1/2; class 1: 0.8, 0.7 -> 1.
    # Averaging the absent class 2 (torchmetrics' recall 0) would give 1/2 instead.
    assert macro_recall(SCORES, LABELS) == pytest.approx(0.75)
    assert macro_recall(torch.full((3, 3), 0.5), LABELS) == 0.0  # 0.5 itself is not above 0.5


def test_f_beta_counts_present_classes_only() -> None:
    # Class 0: TP 0.9, FP 0.6, FN 0.4 -> P = R = 1/2, F2 = 5PR / (4P + R) = 1/2.
    # Class 1: TP 0.8 and 0.7, FP 0.6 -> P = 2/3, R = 1, F2 = (10/3) / (11/3) = 10/11.
    assert f_beta(SCORES, LABELS) == pytest.approx((1 / 2 + 10 / 11) / 2)
    # F1 for comparison: class 0 1/2, class 1 2PR / (P + R) = 4/5.
    assert f_beta(SCORES, LABELS, beta=1.0) == pytest.approx((1 / 2 + 4 / 5) / 2)


def test_metric2_by_name_and_weights() -> None:
    assert set(METRIC2) == {"recall", "fbeta"}
    assert metric2("recall", SCORES, LABELS) == pytest.approx(0.75)
    assert metric2("fbeta", SCORES, LABELS) == pytest.approx((1 / 2 + 10 / 11) / 2)
    weights = torch.ones(3, 3)
    weights[2, 0] = 0  # class 0's missed positive no longer counts: recall (1 + 1) / 2
    assert metric2("recall", SCORES, LABELS, weights) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="recall"):
        metric2("accuracy", SCORES, LABELS)


def test_metric_accumulates_steps_and_counts_each_image_once() -> None:
    metric = MultilabelClassificationMetrics(num_classes=3, metric2="fbeta")
    metric.update(["b", "a"], SCORES[[1, 0]], LABELS[[1, 0]])
    metric.update(["c"], SCORES[2:], LABELS[2:])
    result = metric.compute()
    assert result["mAP"].item() == pytest.approx((AP_0 + AP_1) / 2)
    assert result["metric2"].item() == pytest.approx((1 / 2 + 10 / 11) / 2)
    assert result["ap_per_class"][:2].tolist() == pytest.approx([AP_0, AP_1])

    # A DistributedSampler pads a split with repeats of its first images: "a" again counts
    # once. Counted twice, class 0 would rank +, +, -, +: AP (1 + 1 + 3/4) / 3 = 11/12.
    metric.update(["a"], SCORES[:1], LABELS[:1])
    assert metric.compute()["mAP"].item() == pytest.approx((AP_0 + AP_1) / 2)

    weights = torch.ones(3, 3)
    weights[1, 0] = 0  # class 0's negative between its positives is left out: AP 1
    metric.reset()
    metric.update(["a", "b", "c"], SCORES, LABELS, weights)
    assert metric.compute()["mAP"].item() == pytest.approx(1.0)
    # F-beta of class 0: precision 1, recall 1/2: 5 x 1/2 / (4 + 1/2) = 5/9
    assert metric.compute()["metric2"].item() == pytest.approx((5 / 9 + 10 / 11) / 2)

    metric.reset()
    assert math.isnan(metric.compute()["mAP"].item())  # nothing seen
    metric.update(["a"], SCORES[:1], LABELS[:1])  # only class 0, ranked first: AP 1
    assert metric.compute()["mAP"].item() == pytest.approx(1.0)


def test_metric_rejects_bad_shapes_and_names() -> None:
    with pytest.raises(ValueError, match="metric2"):
        MultilabelClassificationMetrics(num_classes=3, metric2="accuracy")
    metric = MultilabelClassificationMetrics(num_classes=3)
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        metric.update(["a", "b"], torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="1 image ids for 2 images"):
        metric.update(["a"], torch.zeros(2, 3), torch.zeros(2, 3))
