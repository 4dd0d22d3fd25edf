"""Log a test's results and write them to the run directory from inside the test, on global
rank 0; :func:`test_and_write` runs a test so (``wsl.train`` after fitting, ``wsl.evaluate``).

Doing it in ``on_test_end`` (rather than after ``trainer.test`` returns) also works with
``ddp_spawn``, where the test runs in spawned processes whose module state never comes back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from wsl.evaluation.coco_detection import write_coco_json
from wsl.evaluation.results_files import (
    METRICS_FILE,
    per_class_rows,
    read_results,
    write_results,
)
from wsl.evaluation.voc_detection import write_devkit_results
from wsl.reporting.figures import write_ap_chart
from wsl.reporting.pr_curves import write_pr_curves

log = logging.getLogger(__name__)

COCO_RESULTS_FILE = "coco_results.json"
COCO_GROUND_TRUTH_FILE = "coco_ground_truth.json"


def write_test_files(
    output_dir: str | Path, results: dict[str, Any], split: str, class_names: list[str]
) -> list[Path]:
    """``metrics.json``, ``per_class.csv`` and, when the results carry them, devkit results
    files (``detections``, in ``devkit_results``' folder and split name), COCO-format results
    (``coco_results.json``) and the ground truth they were scored against (where it is not
    the user's own COCO file: ``coco_ground_truth.json``), a per-class AP chart
    (``per_class["det_AP"]``) and PR curves."""
    paths = list(write_results(output_dir, results["metrics"], results["per_class"]).values())
    if "detections" in results:
        folder, file_split = results.get("devkit_results") or ("", split)
        directory = Path(output_dir, folder)
        directory.mkdir(parents=True, exist_ok=True)
        paths += write_devkit_results(directory, file_split, class_names, *results["detections"])
    if "coco_results" in results:
        paths.append(write_coco_json(Path(output_dir) / COCO_RESULTS_FILE, results["coco_results"]))
    if "coco_ground_truth" in results:
        path = Path(output_dir) / COCO_GROUND_TRUTH_FILE
        paths.append(write_coco_json(path, results["coco_ground_truth"]))
    if "det_AP" in results["per_class"]:
        title = f"detection AP per class ({split})"
        paths.append(
            write_ap_chart(Path(output_dir) / "class_ap.png", results["per_class"]["det_AP"], title)
        )
    if "curves" in results:
        paths.append(write_pr_curves(output_dir, results["curves"]))
    return paths


def _cell(value: float) -> str:
    """A table cell: 4 decimals, ``-`` for NaN (a class without positives)."""
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def results_table(
    metrics: Mapping[str, float], per_class: Mapping[str, Mapping[str, float]], split: str
) -> str:
    """The per-class table (one row per class, one column per ``per_class`` entry) and the
    final metrics, as plain text for the console and the log (files keep full precision)."""
    columns, values = per_class_rows(per_class)
    rows = [["class", *columns], *([name, *map(_cell, row)] for name, row in values)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    final = " · ".join(f"{name} {_cell(value)}" for name, value in metrics.items())
    return "\n".join([f"per-class results on {split!r}:", *lines, f"final metrics: {final}"])


class ResultFiles(pl.Callback):
    """After ``trainer.test``: log the per-class table and final metrics, and write
    ``pl_module.test_results`` to ``output_dir``."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            split = trainer.datamodule.splits["test"]
            results = pl_module.test_results
            log.info("%s", results_table(results["metrics"], results["per_class"], split))
            paths = write_test_files(self.output_dir, results, split, pl_module.class_names)
            log.info("wrote %s to %s", ", ".join(p.name for p in paths), self.output_dir)
        trainer.strategy.barrier("result_files")


def test_and_write(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    output_dir: str | Path,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Run ``trainer.test``, writing the model's ``test_results`` to ``output_dir`` (see
    :class:`ResultFiles`); return the results."""
    trainer.callbacks.append(ResultFiles(output_dir))
    # verbose=False: ResultFiles logs the results (Lightning's table would repeat them)
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    # With ddp_spawn the results stay in the spawned processes: read back what they wrote.
    results = model.test_results or read_results(output_dir)
    if results is None:
        raise FileNotFoundError(f"the test wrote no {Path(output_dir) / METRICS_FILE}")
    return results
