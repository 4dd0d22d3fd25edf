"""The sections of ``report.html``, each an HTML fragment built from the run directory's
own files (:mod:`wsl.reporting.run_files`) with its charts (:mod:`wsl.reporting.figures`)
saved under the report's files folder."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from omegaconf import OmegaConf

from wsl.evaluation.results_files import per_class_rows, read_results
from wsl.reporting.figures import (
    DASH,
    bar_chart,
    chart_text,
    panel,
    pr_figure,
    save_figure,
    training_figure,
)
from wsl.reporting.pr_curves import PR_CURVES_NAME
from wsl.reporting.run_files import (
    ABSENT,
    FILES_DIR,
    REPORT_NAME,
    pick_pictures,
    read_scalars,
    setting,
)

log = logging.getLogger(__name__)

# Settings shown at the top (dotted keys, as given on the command line); absent ones are
# left out, so the same list serves `wsl.train`, `wsl.evaluate` and `wsl.inspect` runs.
KEY_SETTINGS = (
    "task_name",
    "seed",
    "ckpt_path",
    "data._target_",
    "data.root",
    "data.train_split",
    "data.val_split",
    "data.test_split",
    "data.split",
    "data.classes",
    "data.batch_size",
    "data.train_transform",
    "data.eval_transform",
    "data.proposals",
    "data.proposal_filter",
    "model._target_",
    "model.net",
    "model.optimizer",
    "model.scheduler",
    "trainer.max_epochs",
    "trainer.precision",
    "trainer.accelerator",
    "trainer.devices",
)


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _href(run_dir: Path, path: Path) -> str:
    """Relative link from ``report.html`` to ``path``, quoted for a URL and for HTML."""
    return escape(quote(path.relative_to(run_dir).as_posix()))


def _image(run_dir: Path, path: Path, alt: str) -> str:
    return f'<img class="chart" src="{_href(run_dir, path)}" alt="{escape(alt)}">'


def _format(value: Any) -> str:
    """A table cell: numbers with 4 decimals, ``null``/NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; the first column is a name, the others are numbers."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr><td>{escape(str(row[0]))}</td>"
        + "".join(f'<td class="num">{escape(_format(v))}</td>' for v in row[1:])
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _inline(value: Any) -> str:
    """A config value on one line, YAML-like."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def config_section(run_dir: Path) -> str:
    hydra_dir = run_dir / ".hydra"
    parts = []
    overrides_path = hydra_dir / "overrides.yaml"
    if overrides_path.is_file():
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_path))
        shown = " ".join(overrides) if overrides else "none (all defaults)"
        parts.append(f"<p>Overrides: <code>{escape(shown)}</code></p>")
    else:
        parts.append(note("No .hydra/overrides.yaml: the command-line overrides are unknown."))
    config_path = hydra_dir / "config.yaml"
    if not config_path.is_file():
        parts.append(note("No .hydra/config.yaml: the settings of this run are unknown."))
        return "\n".join(parts)
    config = OmegaConf.load(config_path)
    rows, unresolved = [], False
    for key in KEY_SETTINGS:
        value, resolved = setting(config, key)
        if value is ABSENT:
            continue
        unresolved |= not resolved
        cell = escape(_inline(value)) + ("" if resolved else " <em>(unresolved)</em>")
        rows.append(f"<tr><td><code>{escape(key)}</code></td><td>{cell}</td></tr>")
    if rows:
        parts.append("<table><tr><th>setting</th><th>value</th></tr>" + "".join(rows) + "</table>")
    if unresolved:
        parts.append(note("Values marked unresolved are shown as written in the config."))
    parts.append(
        "<details><summary>Full config (<code>.hydra/config.yaml</code>)</summary>"
        f"<pre>{escape(config_path.read_text())}</pre></details>"
    )
    return "\n".join(parts)


_NO_RESULTS = "No metrics.json: the run was not tested (or stopped before its test)."


def metrics_section(run_dir: Path) -> str:
    results = read_results(run_dir)
    if results is None:
        return note(_NO_RESULTS)
    metrics = results.get("metrics") or {}
    if not metrics:
        return note("metrics.json holds no metrics.")
    return _table(["metric", "value"], list(metrics.items()))


def _ap_columns(per_class: Mapping[str, Any]) -> list[str]:
    """The AP-like per-class columns (``cls_AP``, ``det_AP``, ...), in file order."""
    return [column for column in per_class if "AP" in column.split("_")]


def per_class_section(run_dir: Path, files: Path) -> str:
    results = read_results(run_dir)
    if results is None:
        return note(_NO_RESULTS)
    per_class = results.get("per_class") or {}
    if not per_class:
        return note("metrics.json holds no per-class results.")
    columns, rows = per_class_rows(per_class, missing=None)
    parts = [_table(["class", *columns], [[name, *row] for name, row in rows])]
    if _ap_columns(per_class):
        chart = files / "charts" / "ap_per_class.png"
        ap = {column: per_class[column] for column in _ap_columns(per_class)}
        save_figure(bar_chart(ap, "AP per class"), chart)
        parts.append(_image(run_dir, chart, "AP per class"))
    else:
        parts.append(note("No AP column in metrics.json: no AP chart."))
    return "\n".join(parts)


# --- precision-recall curves -----------------------------------------------------------


def pr_section(run_dir: Path, files: Path) -> str:
    path = run_dir / PR_CURVES_NAME
    if not path.is_file():
        return note(f"No {PR_CURVES_NAME}: this run saved no precision-recall curves.")
    curves = json.loads(path.read_text())
    drawable = {
        name: curve
        for name, curve in curves.items()
        if curve["recall"] and None not in curve["recall"]
    }
    parts = []
    if drawable:
        labels = [
            f"{chart_text(name)} (AP {_format(curve['ap'])})" for name, curve in drawable.items()
        ]
        chart = save_figure(pr_figure(drawable, labels), files / "charts" / "pr_curves.png")
        parts.append(_image(run_dir, chart, "precision-recall curves"))
    left_out = [name for name in curves if name not in drawable]
    if left_out:
        parts.append(note("No curve (no detections or no positives): " + ", ".join(left_out)))
    return "\n".join(parts)


# --- training curves -------------------------------------------------------------------


def training_section(run_dir: Path, files: Path) -> str:
    scalars = read_scalars(run_dir)
    if not scalars:
        return note("No TensorBoard scalars in the run directory: no training curves.")
    panels: dict[str, list[str]] = {}
    for tag in scalars:
        if (name := panel(tag)) is not None:
            panels.setdefault(name, []).append(tag)
    parts = []
    if panels:
        chart = files / "charts" / "training_curves.png"
        save_figure(training_figure(scalars, panels), chart)
        parts.append(_image(run_dir, chart, "training curves"))
    else:
        parts.append(note("No loss or mAP scalar among the TensorBoard scalars."))
    rows = "".join(
        f'<tr><td>{escape(tag)}</td><td class="num">{len(steps)}</td>'
        f'<td class="num">{steps[-1]}</td><td class="num">{values[-1]:.6g}</td></tr>'
        for tag, (steps, values) in scalars.items()
    )
    parts.append(
        "<details><summary>Every scalar (last value)</summary><table><tr><th>tag</th>"
        f"<th>points</th><th>last step</th><th>last value</th></tr>{rows}</table></details>"
    )
    return "\n".join(parts)


# --- pictures --------------------------------------------------------------------------


def pictures_section(run_dir: Path, files: Path, max_pictures: int) -> str:
    chosen, total = pick_pictures(run_dir, max_pictures)
    if not total:
        return note("No pictures (*.png at the top of the run directory or under pictures/).")
    figures = []
    for path in chosen:
        relative = path.relative_to(run_dir)
        copy = files / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        caption = relative.with_suffix("").as_posix()
        figures.append(
            f'<figure><img src="{_href(run_dir, copy)}" alt="{escape(caption)}" loading="lazy">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    shown = f"{len(chosen)} of {total} pictures (final ones first, then the latest)."
    return f'<p>{escape(shown)}</p><div class="pictures">{"".join(figures)}</div>'


# --- files -----------------------------------------------------------------------------


def files_section(run_dir: Path) -> str:
    entries = sorted(
        path
        for path in run_dir.iterdir()
        if not path.name.startswith(".") and path.name not in (REPORT_NAME, FILES_DIR)
    )
    if not entries:
        return note("The run directory holds nothing else.")
    items = []
    for path in entries:
        if path.is_dir():
            count = sum(1 for p in path.rglob("*") if p.is_file())
            detail = f"folder, {count} files"
        else:
            detail = f"{path.stat().st_size / 1024:.1f} KiB"
        name = escape(path.name + ("/" if path.is_dir() else ""))
        items.append(f'<li><a href="{_href(run_dir, path)}">{name}</a> ({detail})</li>')
    return f"<ul>{''.join(items)}</ul>"


def section(anchor: str, heading: str, build: Callable[[], str]) -> str:
    """One section; if building it fails, a note says why and the report goes on."""
    try:
        body = build()
    except Exception as error:  # a broken file must not cost the rest of the report
        log.warning("run report: section %r failed", heading, exc_info=True)
        body = note(f"This part could not be made: {type(error).__name__}: {error}")
    return f'<section id="{anchor}"><h2>{escape(heading)}</h2>\n{body}\n</section>'
