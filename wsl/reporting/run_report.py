"""``report.html``: one page in a run directory that shows everything the run made.

Sections, each read from the run directory's own files:

- configuration: the command-line overrides (``.hydra/overrides.yaml``), the key settings
  and the full composed config (``.hydra/config.yaml``, collapsible);
- final metrics and per-class results (``metrics.json``) with a class-wise AP chart;
- precision-recall curves of every class (``pr_curves.json``, see
  :func:`~wsl.reporting.pr_curves.write_pr_curves`);
- training curves (loss, mAP) read back from the TensorBoard event files;
- sample pictures (``*.png`` at the top of the run directory, then ``pictures/``, final
  ones first, then the latest epoch's);
- the files at the top of the run directory.

Charts and copies of the pictures go to ``report_files/`` beside ``report.html`` and are
linked relatively, so the run directory, or just the two, can be zipped or moved. A part
whose files are missing becomes a short note, and so does a part that fails to read or draw
(the error is logged): the report of a crashed run shows what exists.

What the run directory holds is read by :mod:`wsl.reporting.run_files`, each section is built
by :mod:`wsl.reporting.sections` with the charts of :mod:`wsl.reporting.figures`; this module
assembles the page. ``python -m wsl.reporting.run_report RUN_DIR`` writes the report of an
existing run.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path

from lightning_fabric.utilities.rank_zero import rank_zero_only

from wsl.reporting.run_files import FILES_DIR, REPORT_NAME, default_title
from wsl.reporting.sections import (
    config_section,
    files_section,
    metrics_section,
    per_class_section,
    pictures_section,
    pr_section,
    section,
    training_section,
)
from wsl.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 1.5em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.6em; }
nav a { margin-right: 1em; } .meta { color: #666; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #6b4700; background: #fff6e0; padding: 0.3em 0.7em;
        border-left: 3px solid #e0a000; }
.failed { color: #8a1010; background: #fdeaea; padding: 0.3em 0.7em;
          border-left: 3px solid #c02020; font-weight: bold; }
img.chart { max-width: 100%; display: block; margin: 0.6em 0; }
.pictures { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr));
            gap: 1em; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; word-break: break-all; }
pre { background: #f6f6f6; padding: 0.7em; overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def write_run_report(
    run_dir: str | Path,
    title: str | None = None,
    max_pictures: int = 12,
    failure: str | None = None,
    stopped: str | None = None,
) -> Path:
    """Write ``<run_dir>/report.html`` (atomically) and its ``report_files/``; return its path.

    ``report_files/`` is rebuilt from scratch. ``title`` defaults to :func:`default_title`.
    ``failure``: why the run failed; ``stopped``: why it was stopped (a signal) and how to
    resume; either is shown at the top of the page.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory (give a run's output dir)")
    files = run_dir / FILES_DIR
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    sections = (
        ("config", "Configuration", lambda: config_section(run_dir)),
        ("metrics", "Final metrics", lambda: metrics_section(run_dir)),
        ("per-class", "Per-class results", lambda: per_class_section(run_dir, files)),
        ("pr-curves", "Precision-recall curves", lambda: pr_section(run_dir, files)),
        ("training", "Training curves", lambda: training_section(run_dir, files)),
        ("pictures", "Pictures", lambda: pictures_section(run_dir, files, max_pictures)),
        ("files", "Files", lambda: files_section(run_dir)),
    )
    title = title or default_title(run_dir)
    nav = "".join(f'<a href="#{anchor}">{escape(heading)}</a>' for anchor, heading, _ in sections)
    made = f"{run_dir.resolve()} · report made {datetime.now():%Y-%m-%d %H:%M}"
    failed = f'<p class="failed">The run failed: {escape(failure)}</p>\n' if failure else ""
    if stopped:
        failed += f'<p class="failed">The run was stopped: {escape(stopped)}</p>\n'

    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f'<h1>{escape(title)}</h1><p class="meta">{escape(made)}</p>{failed}<nav>{nav}</nav>\n'
        + "\n".join(section(*entry) for entry in sections)
        + "\n</body></html>\n"
    )
    path = run_dir / REPORT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def report_finished_run(
    run_dir: str | Path, failure: str | None = None, stopped: str | None = None
) -> Path | None:
    """Write the run's report from global rank 0 when its directory exists (also after a
    crash or a stop, so the report shows what the run left, and ``failure`` or ``stopped``:
    why); ``None`` elsewhere."""
    if rank_zero_only.rank != 0 or not Path(run_dir).is_dir():
        return None
    path = write_run_report(run_dir, failure=failure, stopped=stopped)
    log.info("report: %s", path)
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m wsl.reporting.run_report RUN_DIR [--title T] [--max-pictures N]``."""
    parser = argparse.ArgumentParser(description="Write report.html in a run directory.")
    parser.add_argument(
        "run_dir", help="a run's output directory (outputs/runs/train/<experiment>/<time>)"
    )
    parser.add_argument(
        "--title", default=None, help="page title (default: task · experiment · folder name)"
    )
    parser.add_argument("--max-pictures", type=int, default=12, help="sample pictures shown")
    args = parser.parse_args(argv)
    path = write_run_report(args.run_dir, args.title, args.max_pictures)
    print(path)
    return path


if __name__ == "__main__":
    main()
