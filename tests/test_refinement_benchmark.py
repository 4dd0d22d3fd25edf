"""``python -m wsl.benchmarks.refinement``: the mean ± std table over seeds with each method's gain
over WSDDN, and (slow) a whole tiny run of the command that writes every run's scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsl.benchmarks.crop_backbone import save_backbone, train_backbone
from wsl.benchmarks.refinement import main, summarise, table


def test_summary_is_mean_std_over_the_seeds_and_the_gain_per_seed_over_wsddn() -> None:
    runs = {
        "wsddn": [
            {"det_mAP": 0.2, "CorLoc": 0.1, "top_box_area_ratio": 0.3},
            {"det_mAP": 0.4, "CorLoc": 0.3, "top_box_area_ratio": 0.5},
        ],
        "oicr": [
            {"det_mAP": 0.3, "CorLoc": 0.2, "top_box_area_ratio": 0.9},
            {"det_mAP": 0.5, "CorLoc": 0.3, "top_box_area_ratio": 0.7},
        ],
    }
    summary = summarise(runs)
    assert summary["wsddn"]["det_mAP"] == pytest.approx([0.3, 0.1414214])  # sqrt(0.02)
    assert "gain_det_mAP" not in summary["wsddn"]
    # per-seed ratios 1.5 and 1.25: mean 1.375, std 0.25 / sqrt(2), standard error 0.25 / 2
    assert summary["oicr"]["gain_det_mAP"] == pytest.approx([1.375, 0.125])
    assert summary["oicr"]["gain_CorLoc"] == pytest.approx([1.5, 0.5])  # ratios 2 and 1
    assert table(summary, 2, 4).splitlines() == [
        "| method (2 seeds, 4 epochs) | detection mAP (test) | CorLoc (trainval) "
        "| top box area / GT area | detection mAP / WSDDN's | CorLoc / WSDDN's |",
        "|---|---|---|---|---|---|",
        "| wsddn | 0.300 ± 0.141 | 0.200 ± 0.141 | 0.400 ± 0.141 |  |  |",
        "| oicr | 0.400 ± 0.141 | 0.250 ± 0.071 | 0.800 ± 0.141 | 1.38x ± 0.12 | 1.50x ± 0.50 |",
    ]
    first = summarise({method: seeds[:1] for method, seeds in runs.items()})
    assert table(first, 1, 4).splitlines()[::3] == [  # one seed: no spread to show
        "| method (1 seed, 4 epochs) | detection mAP (test) | CorLoc (trainval) "
        "| top box area / GT area | detection mAP / WSDDN's | CorLoc / WSDDN's |",
        "| oicr | 0.300 | 0.200 | 0.900 | 1.50x | 2.00x |",
    ]


@pytest.mark.slow
def test_the_command_trains_each_method_at_both_budgets_and_writes_the_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backbone = tmp_path / "alexnet.pt"
    save_backbone(*train_backbone(num_crops=64, num_held_out=16, size=64, epochs=1), backbone)
    out = tmp_path / "refinement.json"
    main([
        "--seeds", "1", "--epochs", "1", "--methods", "wsddn", "oicr", "--trainval", "8",
        "--test", "4", "--proposals", "12", "--backbone-file", str(backbone),
        "--workdir", str(tmp_path / "work"), "--out", str(out),
    ])  # fmt: skip
    result = json.loads(out.read_text())
    assert set(result["scores"]) == {"wsddn", "oicr"}
    for method, [by_budget] in result["scores"].items():
        assert set(by_budget) == {"1", "2"}, method
        for scores in by_budget.values():
            test, trainval = scores["test"]["detections"], scores["trainval"]["detections"]
            assert 0 <= test["det_mAP"] <= 1 and 0 <= trainval["CorLoc"] <= 1, method
            assert trainval["top_box_area_ratio"] > 0, method
    assert set(result["scores"]["oicr"][0]["1"]["test"]) == {
        "WSDDN", "stream 1", "stream 2", "stream 3", "detections",
    }  # fmt: skip
    assert not list((tmp_path / "work").glob("*/checkpoints"))  # deleted once scored
    printed = capsys.readouterr().out
    assert "| oicr |" in printed and "2 epochs" in printed
