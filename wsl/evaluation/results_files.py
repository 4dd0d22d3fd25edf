"""Final metrics as files in the run directory: ``metrics.json`` and ``per_class.csv`` (the
class-wise AP chart beside them: :func:`wsl.reporting.figures.write_ap_chart`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wsl.runtime.atomic import atomic_path
from wsl.runtime.json_safe import json_safe

METRICS_FILE = "metrics.json"
PER_CLASS_FILE = "per_class.csv"


def read_results(output_dir: str | Path) -> dict[str, Any] | None:
    """``metrics.json`` of ``output_dir`` as written by :func:`write_results` (``metrics``,
    ``per_class``), or ``None`` when there is none; a file that is not JSON raises
    ``ValueError``. A ``null`` value (JSON has no NaN: an undefined metric, such as COCO's AP of
    a size without objects) reads back as NaN. The one reader: the run report, the sweep
    summary and ``test_and_write``."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    if not isinstance(results, dict):
        raise TypeError(f"{path} holds a JSON {type(results).__name__}, not an object")
    results["metrics"] = _nan_for_null(results.get("metrics", {}))
    results["per_class"] = {
        column: _nan_for_null(values) for column, values in results.get("per_class", {}).items()
    }
    return results


def _nan_for_null(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: math.nan if value is None else value for name, value in values.items()}


def per_class_rows(
    per_class: Mapping[str, Mapping[str, Any]], missing: Any = math.nan
) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """The per-class table of ``per_class`` (a column name -> ``{class: value}``): its columns
    in order, and one row per class (in order of first appearance) with its value in each
    column, ``missing`` where a column has none. ``per_class.csv``, the console table and the
    run report show it."""
    columns = list(per_class)
    classes = list(dict.fromkeys(name for column in per_class.values() for name in column))
    rows = [(name, [per_class[c].get(name, missing) for c in columns]) for name in classes]
    return columns, rows


def write_results(
    output_dir: str | Path,
    metrics: Mapping[str, float],
    per_class: Mapping[str, Mapping[str, float]],
) -> dict[str, Path]:
    """Write ``metrics.json`` (``metrics`` and ``per_class``) and ``per_class.csv``.

    ``per_class`` maps a column name (``AP_det``, ``CorLoc``, ...) to ``{class: value}``;
    the CSV has one row per class and one column per entry. Both writes are atomic.
    """
    output_dir = Path(output_dir)
    json_path, csv_path = output_dir / METRICS_FILE, output_dir / PER_CLASS_FILE
    with atomic_path(json_path) as tmp:
        payload = {"metrics": json_safe(dict(metrics)), "per_class": json_safe(dict(per_class))}
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    columns, rows = per_class_rows(per_class)
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class", *columns])
        for name, row in rows:
            writer.writerow([name, *("" if math.isnan(v) else repr(float(v)) for v in row)])
    return {METRICS_FILE: json_path, PER_CLASS_FILE: csv_path}
