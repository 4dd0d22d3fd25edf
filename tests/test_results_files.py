"""metrics.json and the per-class table, written and read in one place
(:mod:`wsl.evaluation.results_files`): the run report, the sweep summary, the console table and
per_class.csv use them."""

from __future__ import annotations

import math
from pathlib import Path

from wsl.callbacks.result_files import results_table
from wsl.evaluation.results_files import per_class_rows, read_results, write_results
from wsl.reporting.sweep_summary import read_job

PER_CLASS = {"det_AP": {"cat": 0.5, "dog": math.nan}, "CorLoc": {"dog": 0.25, "bird": 1.0}}


def test_per_class_rows_in_order_of_first_appearance_with_the_missing_value() -> None:
    columns, rows = per_class_rows(PER_CLASS, missing=None)
    assert columns == ["det_AP", "CorLoc"]
    assert [name for name, _ in rows] == ["cat", "dog", "bird"]
    assert rows[0][1] == [0.5, None] and rows[2][1] == [None, 1.0]
    assert math.isnan(per_class_rows(PER_CLASS)[1][2][1][0])  # NaN by default


def test_the_csv_the_json_and_the_console_show_one_table(tmp_path: Path) -> None:
    assert read_results(tmp_path) is None  # no metrics.json yet
    write_results(tmp_path, {"det_mAP": 0.5}, PER_CLASS)
    assert (tmp_path / "per_class.csv").read_text().splitlines() == [
        "class,det_AP,CorLoc", "cat,0.5,", "dog,,0.25", "bird,,1.0",
    ]  # fmt: skip
    results = read_results(tmp_path)
    assert results is not None and results["metrics"] == {"det_mAP": 0.5}
    table = results_table(results["metrics"], results["per_class"], "test").splitlines()
    assert [line.split(" | ")[0].strip() for line in table[3:6]] == ["cat", "dog", "bird"]
    assert [cell.strip() for cell in table[4].split(" | ")] == ["dog", "-", "0.2500"]


def test_the_sweep_summary_reads_metrics_json_with_the_same_reader(tmp_path: Path) -> None:
    job = tmp_path / "0"
    job.mkdir()
    assert read_job(job).status == "failed: no metrics.json"
    (job / "metrics.json").write_text("{not json")
    assert read_job(job).status.startswith("failed: unreadable metrics.json (JSONDecodeError(")
    (job / "metrics.json").write_text("[1]")
    assert read_job(job).status.startswith("failed: unreadable metrics.json (TypeError(")
    write_results(job, {"cls_mAP": 0.75}, PER_CLASS)
    assert (read_job(job).status, read_job(job).metrics) == ("ok", {"cls_mAP": 0.75})
