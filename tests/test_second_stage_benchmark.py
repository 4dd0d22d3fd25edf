"""``python -m wsl.benchmarks.second_stage``: its summary against hand-computed values, and the
commands it runs (a weak demo, then ``wsl.retrain`` on its checkpoint from the same backbone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsl.benchmarks.second_stage import detector_command, summarise, table, weak_command


def test_the_summary_is_mean_std_and_the_gain_a_per_seed_ratio() -> None:
    runs = [
        {"weak_det_mAP": 0.4, "pseudo_CorLoc": 0.6, "detector_det_mAP": 0.6},
        {"weak_det_mAP": 0.5, "pseudo_CorLoc": 0.7, "detector_det_mAP": 0.5},
    ]
    summary = summarise(runs)
    assert summary["weak_det_mAP"] == pytest.approx([0.45, 0.0707107], rel=1e-5)
    assert summary["pseudo_CorLoc"] == pytest.approx([0.65, 0.0707107], rel=1e-5)
    # ratios 1.5 and 1.0: mean 1.25, standard error stdev / sqrt(2) = 0.3536 / 1.414 = 0.25
    assert summary["gain"] == pytest.approx([1.25, 0.25])
    text = table(summary, "pcl", 2)
    assert "| weak model: test mAP | 0.450 ± 0.071 |" in text
    assert "1.25x ± 0.25 (s.e.)" in text


def test_the_detector_retrains_the_weak_checkpoint_from_the_same_backbone(tmp_path: Path) -> None:
    weights = tmp_path / "alexnet_crops.pt"
    weak = weak_command("pcl", 2, tmp_path / "data", 8, tmp_path / "weak", weights)
    assert weak[1:4] == ["-m", "wsl.train", "experiment=pcl_demo"]
    assert f"model.net.weights={weights}" in weak and "seed=2" in weak
    checkpoint = tmp_path / "weak" / "checkpoints" / "last.ckpt"
    detector = detector_command(checkpoint, 2, 6, 2, "pgf", tmp_path / "detector", weights)
    assert detector[1:4] == ["-m", "wsl.retrain", "experiment=fast_rcnn_demo"]
    overrides = [
        f"ckpt_path={checkpoint}", "retrain.rule.rule=pgf", "trainer.max_epochs=6",
        "data.batch_size=2", f"model.net.weights={weights}", "model.net.freeze_blocks=1",
        "seed=2",
    ]  # fmt: skip
    assert set(overrides) <= set(detector)
