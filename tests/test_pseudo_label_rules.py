"""The pseudo-label rules on hand-made detections: OICR's top-1 per positive class
(lib/fast_rcnn/test_train.py) and SoS-WSOD's PGF (tools/pgf.py), with the cases where they
differ from a naive reading: a contained top-1, a removed box that still contains others, two
boxes inside each other, the 1e-6 at the containment threshold, the +1 pixel areas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from wsl.pseudo_labels.mining import (
    SOS_WSOD_VOC_EXEMPT,
    PseudoLabelRule,
    containment,
    pgf,
    summary,
    top1,
)
from wsl.runtime.settings import SettingError
from wsl.structures.detections import Detections, ImageDetections

BIG = [0.0, 0.0, 99.0, 99.0]  # 100 x 100 pixels
INSIDE = [10.0, 10.0, 29.0, 29.0]  # 20 x 20, all inside BIG: containment 1, BIG in it 0.04
FAR = [200.0, 200.0, 239.0, 239.0]
FAR2 = [300.0, 0.0, 349.0, 49.0]


def detections(*rows: tuple[list[float], float, int]) -> ImageDetections:
    boxes = [box for box, _, _ in rows]
    return ImageDetections.of(
        np.array(boxes).reshape(-1, 4), [s for _, s, _ in rows], [c for _, _, c in rows]
    )


def kept(result) -> list[int]:
    return result.kept.tolist()


# --- top1 -----------------------------------------------------------------------------------


def test_top1_is_the_best_box_of_each_positive_class_and_none_of_an_absent_one() -> None:
    found = detections(
        (BIG, 0.9, 0), (FAR, 0.95, 1), (INSIDE, 0.3, 0), (FAR2, 0.1, 2), (FAR, 0.05, 2)
    )
    result = top1(found, [0, 2])  # class 1, the best-scoring detection, is not in the labels
    assert kept(result) == [0, 3]
    assert result.labels.classes.tolist() == [0, 2]
    assert result.labels.boxes.tolist() == [BIG, FAR2]
    assert result.labels.scores.tolist() == [0.9, 0.1]  # no threshold: top-1 whatever its score
    assert result.missing == ()


def test_top1_takes_the_highest_score_not_the_first_detection() -> None:
    found = detections((INSIDE, 0.4, 0), (BIG, 0.7, 0), (FAR, 0.6, 0))
    assert kept(top1(found, [0])) == [1]


def test_top1_ties_go_to_the_first_in_the_record() -> None:
    found = detections((FAR, 0.1, 0), (BIG, 0.5, 0), (INSIDE, 0.5, 0))
    assert kept(top1(found, [0])) == [1]  # np.argmax, as test_train.py line 246


def test_a_positive_class_without_a_detection_gets_no_box_and_is_counted() -> None:
    found = detections((BIG, 0.9, 0))
    result = top1(found, [3, 0])
    assert kept(result) == [0]
    assert result.missing == (3,)
    assert summary([result, top1(found, [0])]) == {
        "images": 2,
        "pseudo_boxes": 2,
        "missing_classes": 1,
    }


@pytest.mark.parametrize("rule", [top1, pgf])
def test_empty_detections_give_no_box_and_every_positive_class_missing(rule) -> None:
    empty = detections()
    assert kept(rule(empty, [4, 1])) == []
    assert rule(empty, [4, 1]).missing == (1, 4)
    assert rule(empty, []).missing == ()
    assert rule(empty, []).labels.boxes.shape == (0, 4)


@pytest.mark.parametrize("rule", [top1, pgf])
def test_an_image_without_positive_classes_gets_no_box(rule) -> None:
    assert kept(rule(detections((BIG, 0.9, 0), (FAR, 0.8, 1)), [])) == []


def test_rules_take_the_tensors_detect_returns() -> None:
    found = Detections(torch.tensor([BIG, FAR]), torch.tensor([0.9, 0.8]), torch.tensor([0, 1]))
    assert kept(top1(found, torch.tensor([1]))) == [1]
    assert kept(pgf(found, torch.tensor([0, 1]))) == [0, 1]


def test_positive_classes_must_be_class_indices() -> None:
    with pytest.raises(ValueError, match="class indices"):
        top1(detections((BIG, 0.9, 0)), [0.5])
    with pytest.raises(ValueError, match="class indices"):
        top1(detections((BIG, 0.9, 0)), [-1])


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        top1(detections((BIG, float("nan"), 0)), [0])


# --- containment ----------------------------------------------------------------------------


def test_containment_is_the_intersection_over_the_inner_box_with_plus_one_areas() -> None:
    # A is 20 x 5 = 100 pixels; B (28 x 5) overlaps columns 3..19 of it: 17 x 5 = 85 pixels.
    a, b = np.array([0.0, 0.0, 19.0, 4.0]), np.array([3.0, 0.0, 30.0, 4.0])
    assert containment(a, b) == pytest.approx(85 / (100 + 1e-6), rel=1e-15)
    assert containment(b, a) == pytest.approx(85 / (140 + 1e-6), rel=1e-15)
    assert containment(a, np.array(FAR)) == 0.0
    matrix = containment(np.array([BIG, INSIDE])[:, None], np.array([BIG, INSIDE])[None])
    assert matrix == pytest.approx(np.array([[1.0, 400 / 10000], [1.0, 1.0]]), rel=1e-6)


# --- pgf ------------------------------------------------------------------------------------


def test_pgf_keeps_the_top1_and_every_box_scoring_at_least_the_threshold() -> None:
    found = detections(
        (BIG, 0.9, 0),
        (FAR, 0.2, 0),  # exactly the threshold: kept (pgf.py drops score < t_keep)
        (FAR2, 0.19999, 0),  # below: dropped
        ([400.0, 0.0, 409.0, 9.0], 0.05, 2),  # the only box of class 2: its top-1, kept
        ([500.0, 0.0, 509.0, 9.0], 0.01, 2),  # below, not its top-1: dropped
    )
    result = pgf(found, [0, 2])
    assert kept(result) == [0, 1, 3]
    assert result.missing == ()
    assert kept(pgf(found, [0, 2], score_threshold=0.1)) == [0, 1, 2, 3]


def test_pgf_never_keeps_a_class_absent_from_the_labels() -> None:
    found = detections((FAR, 0.99, 1), (FAR2, 0.98, 1), (BIG, 0.3, 0))
    assert kept(pgf(found, [0])) == [2]


def test_pgf_drops_a_box_contained_in_a_box_of_its_class() -> None:
    found = detections((BIG, 0.9, 0), (INSIDE, 0.5, 0), (FAR, 0.4, 0))
    result = pgf(found, [0])
    assert kept(result) == [0, 2]  # INSIDE is 100% inside BIG; BIG only 4% inside INSIDE


def test_pgf_drops_even_the_top1_when_it_lies_in_a_box_of_its_class() -> None:
    # pgf.py protects the top-1 from the score threshold only (lines 234-237), not from the
    # containment step (lines 248-264).
    found = detections((INSIDE, 0.9, 0), (BIG, 0.5, 0))
    assert kept(pgf(found, [0])) == [1]


def test_pgf_containment_is_within_a_class() -> None:
    found = detections((BIG, 0.9, 0), (INSIDE, 0.8, 1))
    assert kept(pgf(found, [0, 1])) == [0, 1]


def test_pgf_containment_threshold_is_inclusive_after_the_authors_epsilon() -> None:
    # 85 of A's 100 pixels lie in B: 85 / (100 + 1e-6) is just below 0.85, so A stays at 0.85
    # (pgf.py line 219); at 0.845 it goes, where areas without the +1 (64 / 76 = 0.842) keep it.
    a, b = [0.0, 0.0, 19.0, 4.0], [3.0, 0.0, 30.0, 4.0]
    found = detections((a, 0.9, 0), (b, 0.5, 0))
    assert kept(pgf(found, [0])) == [0, 1]
    assert kept(pgf(found, [0], containment_threshold=0.845)) == [1]


def test_pgf_judges_every_pair_on_the_boxes_the_threshold_kept() -> None:
    # B is 86% inside A (86 of its 100 columns) and goes; C lies wholly inside B and outside A:
    # it goes too, because pgf.py marks `save` over all pairs before removing any.
    a, b, c = [0.0, 0.0, 199.0, 99.0], [114.0, 0.0, 213.0, 99.0], [200.0, 0.0, 213.0, 99.0]
    found = detections((a, 0.9, 0), (b, 0.5, 0), (c, 0.4, 0))
    assert kept(pgf(found, [0])) == [0]
    # A box below the score threshold (not the top-1) is gone before it can contain anything.
    found = detections((a, 0.9, 0), (b, 0.1, 0), (c, 0.4, 0))
    assert kept(pgf(found, [0])) == [0, 2]


def test_pgf_drops_both_of_two_boxes_inside_each_other_and_counts_the_class() -> None:
    # 99 x 100 inside 100 x 100: 100% one way, 99% the other; both >= 0.85, both go.
    found = detections((BIG, 0.9, 0), ([0.0, 0.0, 99.0, 98.0], 0.5, 0), (FAR, 0.8, 1))
    result = pgf(found, [0, 1])
    assert kept(result) == [2]
    assert result.missing == (0,)


def test_pgf_exempt_classes_skip_the_containment_step() -> None:
    found = detections((BIG, 0.9, 0), (INSIDE, 0.5, 0), (BIG, 0.9, 1), (INSIDE, 0.5, 1))
    assert kept(pgf(found, [0, 1], exempt_classes=[1])) == [0, 2, 3]


# --- the rule a config names ----------------------------------------------------------------

CLASSES = ("aeroplane", "bicycle", "cow")


def test_the_rule_config_names_the_rule_and_its_settings() -> None:
    found = detections((BIG, 0.9, 2), (INSIDE, 0.5, 2), (FAR, 0.1, 2))
    assert kept(PseudoLabelRule().mine(found, [2], CLASSES)) == [0]
    assert kept(PseudoLabelRule(rule="pgf").mine(found, [2], CLASSES)) == [0]
    assert kept(PseudoLabelRule("pgf", score_threshold=0.05).mine(found, [2], CLASSES)) == [0, 2]
    exempt = PseudoLabelRule("pgf", containment_exempt=["cow"])
    assert kept(exempt.mine(found, [2], CLASSES)) == [0, 1]
    assert "cow" in SOS_WSOD_VOC_EXEMPT


def test_hydra_builds_the_rule_from_plain_fields() -> None:
    rule = instantiate(
        {
            "_target_": "wsl.pseudo_labels.mining.PseudoLabelRule",
            "rule": "pgf",
            "score_threshold": 0.3,
            "containment_exempt": ["cow"],
        }
    )
    assert rule == PseudoLabelRule("pgf", 0.3, 0.85, ("cow",))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rule": "top2"}, r"rule 'top2' is not valid; choose one of \('top1', 'pgf'\)"),
        ({"score_threshold": "0.2"}, "score_threshold='0.2' is not a number"),
        ({"score_threshold": float("inf")}, "not finite"),
        ({"containment_threshold": 0.0}, r"must be a number in \(0, 1\]"),
        ({"containment_threshold": 1.5}, r"must be a number in \(0, 1\]"),
        ({"containment_exempt": "cow"}, "must be a list of class names"),
    ],
)
def test_bad_rule_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(SettingError, match=message):
        PseudoLabelRule(**settings)


def test_an_exempt_class_must_be_in_the_class_list() -> None:
    rule = PseudoLabelRule("pgf", containment_exempt=["sheep"])
    with pytest.raises(SettingError, match=r"classes \['sheep'\] that are not in the class list"):
        rule.mine(detections((BIG, 0.9, 0)), [0], CLASSES)
