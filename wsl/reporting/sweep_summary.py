"""One table for a Hydra sweep: ``summary.csv`` and ``summary.md`` in the sweep directory.

A sweep (``python -m wsl.train -m ...``) makes one job directory per run,
``<hydra.sweep.dir>/<job number>``, each with ``.hydra/overrides.yaml`` and, when the job got
as far as testing, the ``metrics.json`` that ``wsl.train`` writes. :func:`summarize_sweep`
reads them all into one row per job (sorted by job number): ``job``, one column per override
key (``model.optimizer.lr``, as written on the command line or by the sweeper), one column
per final metric (empty where a job has none) and ``status``: ``ok`` or ``failed: ...``. A
job without a file still gets its row. ``summary.csv`` keeps the metrics at full precision;
``summary.md`` rounds them to :data:`MD_DIGITS` significant digits for reading.

:class:`SweepSummary` is the Hydra callback (``conf/hydra/default.yaml``) that writes the
summary after every job of a sweep and once more at its end, so a sweep that stops at a
failed job still leaves one; while jobs run in parallel, those still running read
``failed: no metrics.json`` until the final summary. To summarize a sweep dir again (after an
interrupted sweep, say): ``python -m wsl.reporting.sweep_summary SWEEP_DIR``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from wsl.evaluation.results_files import METRICS_FILE, read_results
from wsl.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

MD_DIGITS = 4  # significant digits of the metrics in summary.md


@dataclass
class JobResult:
    """What one job of a sweep left: its number, overrides, final metrics and status."""

    job: int
    overrides: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    status: str = "ok"


def read_job(job_dir: Path) -> JobResult:
    """The overrides (``.hydra/overrides.yaml``) and metrics (``metrics.json``) of a job."""
    result = JobResult(int(job_dir.name))
    overrides_path = job_dir / ".hydra" / "overrides.yaml"
    if overrides_path.is_file():
        try:  # safe_load: a python/... tag in a job's file is refused, never constructed
            overrides = yaml.safe_load(overrides_path.read_text()) or []
        except yaml.YAMLError as error:
            result.status = f"failed: unreadable .hydra/overrides.yaml ({type(error).__name__})"
            return result
        for override in overrides if isinstance(overrides, list) else []:
            key, _, value = str(override).partition("=")
            result.overrides[key] = value
    try:
        results = read_results(job_dir)
        if results is None:
            result.status = f"failed: no {METRICS_FILE}"
        else:
            result.metrics = dict(results["metrics"])
    except (ValueError, KeyError, TypeError) as error:
        result.status = f"failed: unreadable {METRICS_FILE} ({error!r})"
    return result


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of ``sweep_dir`` (its numbered subfolders), by job number."""
    numbered = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(numbered, key=lambda p: int(p.name))


def _cell(value: Any, digits: int | None = None) -> str:
    """A value as a table cell: floats at full precision (or ``digits`` significant digits),
    ``None`` and NaN (no value, an undefined metric) empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value) if digits is None else f"{value:.{digits}g}"
    return str(value)


def summarize_sweep(sweep_dir: str | Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``sweep_dir``; return their paths."""
    sweep_dir = Path(sweep_dir)
    jobs = [read_job(job_dir) for job_dir in job_dirs(sweep_dir)]
    override_keys = list(dict.fromkeys(key for job in jobs for key in job.overrides))
    metric_names = list(dict.fromkeys(name for job in jobs for name in job.metrics))
    header = ["job", *override_keys, *metric_names, "status"]

    def table(digits: int | None) -> list[list[str]]:
        return [
            [
                str(job.job),
                *(job.overrides.get(key, "") for key in override_keys),
                *(_cell(job.metrics.get(name), digits) for name in metric_names),
                job.status,
            ]
            for job in jobs
        ]

    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(table(None))
    lines = [header, ["---"] * len(header), *table(MD_DIGITS)]
    with atomic_path(md_path) as tmp:
        escaped = ([cell.replace("|", r"\|") for cell in line] for line in lines)
        tmp.write_text("".join(f"| {' | '.join(line)} |\n" for line in escaped))
    return csv_path, md_path


class SweepSummary(Callback):
    """Hydra callback: :func:`summarize_sweep` after each job of a sweep and at its end."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            summarize_sweep(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        for path in summarize_sweep(config.hydra.sweep.dir):
            log.info("wrote %s", path)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m wsl.reporting.sweep_summary SWEEP_DIR``: summarize a finished sweep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="hydra.sweep.dir of the sweep")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory; give the sweep's hydra.sweep.dir")
    for path in summarize_sweep(args.sweep_dir):
        print(path)


if __name__ == "__main__":
    main()
