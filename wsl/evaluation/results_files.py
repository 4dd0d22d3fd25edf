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


def read_results(output_dir: str | Path) -> dict[str, Any]:
    """``metrics.json`` of ``output_dir`` as written by :func:`write_results`."""
    return json.loads((Path(output_dir) / "metrics.json").read_text())


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
    json_path, csv_path = output_dir / "metrics.json", output_dir / "per_class.csv"
    with atomic_path(json_path) as tmp:
        payload = {"metrics": json_safe(dict(metrics)), "per_class": json_safe(dict(per_class))}
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    columns = list(per_class)
    classes = list(dict.fromkeys(name for column in per_class.values() for name in column))
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class", *columns])
        for name in classes:
            row = [per_class[column].get(name, math.nan) for column in columns]
            writer.writerow([name, *("" if math.isnan(v) else repr(float(v)) for v in row)])
    return {"metrics.json": json_path, "per_class.csv": csv_path}
