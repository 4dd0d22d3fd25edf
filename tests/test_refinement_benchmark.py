"""``python -m wsl.benchmarks.refinement``: the mean ± std table over seeds, and (slow) a whole
tiny run of the command that writes every run's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsl.benchmarks.refinement import main, summarise, table


def test_summary_is_mean_and_sample_std_over_the_seeds() -> None:
    runs = {
        "wsddn": [
            {"det_mAP": 0.2, "CorLoc": 0.1, "top_box_area_ratio": 0.3},
            {"det_mAP": 0.4, "CorLoc": 0.3, "top_box_area_ratio": 0.5},
        ],
        "oicr": [{"det_mAP": 0.5, "CorLoc": 0.6, "top_box_area_ratio": 0.9}],
    }
    summary = summarise(runs)
    assert summary["wsddn"]["det_mAP"] == pytest.approx([0.3, 0.1414214])  # sqrt(0.02)
    assert summary["oicr"]["CorLoc"] == [0.6, 0.0]  # one seed: no spread
    assert table(summary, 2).splitlines() == [
        "| method (2 seeds) | detection mAP (mean ± std) | CorLoc (mean ± std) "
        "| top box area / GT area (mean ± std) |",
        "|---|---|---|---|",
        "| wsddn | 0.300 ± 0.141 | 0.200 ± 0.141 | 0.400 ± 0.141 |",
        "| oicr | 0.500 ± 0.000 | 0.600 ± 0.000 | 0.900 ± 0.000 |",
    ]


@pytest.mark.slow
def test_the_command_trains_each_method_and_writes_the_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "refinement.json"
    main([
        "--seeds", "1", "--epochs", "1", "--methods", "wsddn", "oicr", "--trainval", "8",
        "--proposals", "12", "--workdir", str(tmp_path / "work"), "--out", str(out),
    ])  # fmt: skip
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"wsddn", "oicr"}
    for method, [metrics] in result["runs"].items():
        assert 0 <= metrics["det_mAP"] <= 1 and 0 <= metrics["CorLoc"] <= 1, method
        assert metrics["top_box_area_ratio"] > 0, method
    assert "| oicr |" in capsys.readouterr().out
