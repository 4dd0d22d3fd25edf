"""``report.html``: one page in a run directory that shows everything the run made.

Sections, each read from the run directory's own files:

- configuration: the command-line overrides (``.hydra/overrides.yaml``), the key settings
  and the full composed config (``.hydra/config.yaml``, collapsible);
- final metrics and per-class results (``metrics.json``) with a class-wise AP chart;
- precision-recall curves of every class (``pr_curves.json``, see ``write_pr_curves``);
- training curves (loss, mAP) read back from the TensorBoard event files;
- sample pictures (``*.png`` at the top of the run directory, then ``pictures/``, final
  ones first, then the latest epoch's);
- the files at the top of the run directory.

Charts and copies of the pictures go to ``report_files/`` beside ``report.html`` and are
linked relatively, so the run directory, or just the two, can be zipped or moved. A part
whose files are missing becomes a short note, and so does a part that fails to read or draw
(the error is logged): the report of a crashed run shows what exists.

``python -m wsl.reporting.run_report RUN_DIR`` writes the report of an existing run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import matplotlib
import numpy as np
from lightning_fabric.utilities.rank_zero import rank_zero_only
from matplotlib.figure import Figure
from omegaconf import Container, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tensorboard.backend.event_processing.plugin_event_accumulator import (
    TENSORS,
    EventAccumulator,
)
from tensorboard.util.tensor_util import make_ndarray

from wsl.atomic import atomic_path

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
FILES_DIR = "report_files"
PR_CURVES_NAME = "pr_curves.json"
# Shown for a value that is null/NaN (undefined, e.g. a class without positives).
DASH = "\N{EN DASH}"
# Most points kept per class in pr_curves.json (the curve has one per detection).
MAX_CURVE_POINTS = 500

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
    "model.inference",
    "trainer.max_epochs",
    "trainer.precision",
    "trainer.accelerator",
    "trainer.devices",
)

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


class PRCurve(Protocol):
    """A class's detection AP and precision/recall curve (``voc_detection.ClassAP`` is one)."""

    @property
    def ap(self) -> float: ...

    @property
    def precision(self) -> np.ndarray: ...

    @property
    def recall(self) -> np.ndarray: ...


def curve_points(precision: np.ndarray, recall: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (ascending) of at most ``max_points`` points that keep a curve's shape.

    The recall axis is cut into ``max_points // 4`` bins (by rank when recall is undefined);
    each bin keeps its first and last point and its highest and lowest precision, so the
    precision envelope and the saw teeth survive.
    """
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    count = len(precision)
    if count <= max_points:
        return np.arange(count)
    position = recall if np.isfinite(recall).all() else np.arange(count) / count
    num_bins = max_points // 4
    bins = np.minimum((position * num_bins).astype(int), num_bins - 1)

    def first_per_bin(order: np.ndarray) -> np.ndarray:
        return order[np.unique(bins[order], return_index=True)[1]]

    order = np.arange(count)
    kept = (
        first_per_bin(order),
        first_per_bin(order[::-1]),
        first_per_bin(np.lexsort((-precision, bins))),
        first_per_bin(np.lexsort((precision, bins))),
    )
    return np.unique(np.concatenate(kept))


def _json_float(value: float) -> float | None:
    """A float for JSON: NaN (undefined) becomes ``null``."""
    value = float(value)
    return None if math.isnan(value) else value


def write_pr_curves(
    output_dir: str | Path, curves: Mapping[str, PRCurve], max_points: int = MAX_CURVE_POINTS
) -> Path:
    """Write ``pr_curves.json``: ``{class: {"precision": [...], "recall": [...], "ap": AP}}``.

    Curves longer than ``max_points`` are thinned with ``curve_points``; ``ap`` is the exact
    AP of the full curve. NaN (a class without positives) is written as ``null``. Atomic.
    """
    payload = {}
    for name, curve in curves.items():
        precision, recall = np.asarray(curve.precision), np.asarray(curve.recall)
        keep = curve_points(precision, recall, max_points)
        payload[str(name)] = {
            "precision": [_json_float(v) for v in precision[keep]],
            "recall": [_json_float(v) for v in recall[keep]],
            "ap": _json_float(curve.ap),
        }
    path = Path(output_dir) / PR_CURVES_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload) + "\n")
    return path


def _note(text: str) -> str:
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


def _chart_text(text: str) -> str:
    """Text for matplotlib, shown as written (``$`` would start mathtext)."""
    return text.replace("$", r"\$")


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def _natural_key(path: Path) -> list[str | int]:
    """Sort key that puts ``epoch_9`` before ``epoch_10``."""
    pieces = re.split(r"(\d+)", path.as_posix())
    return [int(piece) if i % 2 else piece for i, piece in enumerate(pieces)]


# --- configuration ---------------------------------------------------------------------

_ABSENT = object()


def _setting(config: DictConfig, key: str) -> tuple[Any, bool]:
    """``key``'s value and whether it was resolved (else it is shown as written), or
    ``_ABSENT``. Interpolations resolve at report time (``oc.env`` reads this environment)."""
    try:
        value = OmegaConf.select(config, key, default=_ABSENT)
        if isinstance(value, Container):
            value = OmegaConf.to_container(value, resolve=True)
        return value, True
    except OmegaConfBaseException:
        raw = OmegaConf.to_container(config, resolve=False)
        for part in key.split("."):
            raw = raw[part]
        return raw, False


def _inline(value: Any) -> str:
    """A config value on one line, YAML-like."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def _config_section(run_dir: Path) -> str:
    hydra_dir = run_dir / ".hydra"
    parts = []
    overrides_path = hydra_dir / "overrides.yaml"
    if overrides_path.is_file():
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_path))
        shown = " ".join(overrides) if overrides else "none (all defaults)"
        parts.append(f"<p>Overrides: <code>{escape(shown)}</code></p>")
    else:
        parts.append(_note("No .hydra/overrides.yaml: the command-line overrides are unknown."))
    config_path = hydra_dir / "config.yaml"
    if not config_path.is_file():
        parts.append(_note("No .hydra/config.yaml: the settings of this run are unknown."))
        return "\n".join(parts)
    config = OmegaConf.load(config_path)
    rows, unresolved = [], False
    for key in KEY_SETTINGS:
        value, resolved = _setting(config, key)
        if value is _ABSENT:
            continue
        unresolved |= not resolved
        cell = escape(_inline(value)) + ("" if resolved else " <em>(unresolved)</em>")
        rows.append(f"<tr><td><code>{escape(key)}</code></td><td>{cell}</td></tr>")
    if rows:
        parts.append("<table><tr><th>setting</th><th>value</th></tr>" + "".join(rows) + "</table>")
    if unresolved:
        parts.append(_note("Values marked unresolved are shown as written in the config."))
    parts.append(
        "<details><summary>Full config (<code>.hydra/config.yaml</code>)</summary>"
        f"<pre>{escape(config_path.read_text())}</pre></details>"
    )
    return "\n".join(parts)


# --- metrics ---------------------------------------------------------------------------


def _read_results(run_dir: Path) -> dict[str, Any] | None:
    """The content of ``metrics.json``, or ``None`` when there is none."""
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


_NO_RESULTS = "No metrics.json: the run was not tested (or stopped before its test)."


def _metrics_section(run_dir: Path) -> str:
    results = _read_results(run_dir)
    if results is None:
        return _note(_NO_RESULTS)
    metrics = results.get("metrics") or {}
    if not metrics:
        return _note("metrics.json holds no metrics.")
    return _table(["metric", "value"], list(metrics.items()))


def _ap_columns(per_class: Mapping[str, Any]) -> list[str]:
    """The AP-like per-class columns (``cls_AP``, ``det_AP``, ...), in file order."""
    return [column for column in per_class if "AP" in column.split("_")]


def _ap_chart(per_class: Mapping[str, Mapping[str, float | None]], path: Path) -> None:
    """Horizontal bars, one group per class, one bar per AP-like column."""
    columns = _ap_columns(per_class)
    classes = list(dict.fromkeys(name for column in columns for name in per_class[column]))
    height = 0.8 / len(columns)
    figure = Figure(figsize=(8, max(2.5, 1.0 + 0.25 * len(classes) * (0.5 + 0.5 * len(columns)))))
    axes = figure.add_subplot()
    rows = np.arange(len(classes))
    for i, column in enumerate(columns):
        values = [per_class[column].get(name) for name in classes]
        widths = [0.0 if v is None else float(v) for v in values]
        offset = (i - (len(columns) - 1) / 2) * height
        bars = axes.barh(rows + offset, np.nan_to_num(widths), height, label=column)
        axes.bar_label(bars, labels=[_format(v) for v in values], padding=2, fontsize=7)
    axes.set_yticks(rows, [_chart_text(name) for name in classes])
    axes.invert_yaxis()
    axes.set_xlim(0, 1.12)
    axes.set_xlabel("AP")
    axes.set_title("AP per class")
    axes.legend(loc="lower right", fontsize=8)
    _save(figure, path)


def _per_class_section(run_dir: Path, files: Path) -> str:
    results = _read_results(run_dir)
    if results is None:
        return _note(_NO_RESULTS)
    per_class = results.get("per_class") or {}
    if not per_class:
        return _note("metrics.json holds no per-class results.")
    columns = list(per_class)
    classes = list(dict.fromkeys(name for column in per_class.values() for name in column))
    rows = [[name, *(per_class[c].get(name) for c in columns)] for name in classes]
    parts = [_table(["class", *columns], rows)]
    if _ap_columns(per_class):
        chart = files / "charts" / "ap_per_class.png"
        _ap_chart(per_class, chart)
        parts.append(_image(run_dir, chart, "AP per class"))
    else:
        parts.append(_note("No AP column in metrics.json: no AP chart."))
    return "\n".join(parts)


# --- precision-recall curves -----------------------------------------------------------


def _pr_section(run_dir: Path, files: Path) -> str:
    path = run_dir / PR_CURVES_NAME
    if not path.is_file():
        return _note(f"No {PR_CURVES_NAME}: this run saved no precision-recall curves.")
    curves = json.loads(path.read_text())
    drawable = {
        name: curve
        for name, curve in curves.items()
        if curve["recall"] and None not in curve["recall"]
    }
    parts = []
    if drawable:
        figure = Figure(figsize=(8, 5.5))
        axes = figure.add_subplot()
        colors = matplotlib.colormaps["tab10" if len(drawable) <= 10 else "tab20"].colors
        for i, (name, curve) in enumerate(drawable.items()):
            label = f"{_chart_text(name)} (AP {_format(curve['ap'])})"
            axes.plot(
                curve["recall"], curve["precision"], label=label, color=colors[i % len(colors)]
            )
        axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        axes.set_title("Precision-recall per class")
        axes.grid(alpha=0.3)
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        chart = files / "charts" / "pr_curves.png"
        _save(figure, chart)
        parts.append(_image(run_dir, chart, "precision-recall curves"))
    left_out = [name for name in curves if name not in drawable]
    if left_out:
        parts.append(_note("No curve (no detections or no positives): " + ", ".join(left_out)))
    return "\n".join(parts)


# --- training curves -------------------------------------------------------------------


@contextmanager
def _quiet_tensorboard() -> Iterator[None]:
    """Silence TensorBoard's INFO lines ("Directory watcher advancing ...") while reading."""
    logger = logging.getLogger("tensorboard")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def read_scalars(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of the run's TensorBoard event files: ``{tag: (steps, values)}``.

    Read with TensorBoard's ``EventAccumulator`` (every point kept; both the legacy
    ``add_scalar`` format and ``tensorboard.summary`` scalars), folders merged in time order.
    """
    run_dir = Path(run_dir)
    folders = sorted(
        {
            path.parent
            for path in run_dir.rglob("events.out.tfevents.*")
            if FILES_DIR not in path.relative_to(run_dir).parts
        }
    )
    points: dict[str, list[tuple[float, int, float]]] = {}
    for folder in folders:
        # keep every scalar, one item of any other tag (images, histograms)
        events = EventAccumulator(
            str(folder), size_guidance={TENSORS: 1}, tensor_size_guidance={"scalars": 0}
        )
        with _quiet_tensorboard():
            events.Reload()
        if "scalars" not in events.ActivePlugins():
            continue
        for tag in events.PluginTagToContent("scalars"):
            points.setdefault(tag, []).extend(
                (e.wall_time, e.step, float(make_ndarray(e.tensor_proto)))
                for e in events.Tensors(tag)
            )
    scalars = {}
    for tag, series in sorted(points.items()):
        series.sort()
        scalars[tag] = (
            np.array([step for _, step, _ in series]),
            np.array([value for _, _, value in series]),
        )
    return scalars


# Training-curve panels, left to right.
PANELS = ("loss", "mAP")


def _panel(tag: str) -> str | None:
    """Which training-curve panel shows ``tag``: losses and mAPs; ``None``: neither."""
    name = tag.rsplit("/", 1)[-1]
    if name.startswith("loss"):
        return "loss"
    return "mAP" if "mAP" in name else None


def _training_section(run_dir: Path, files: Path) -> str:
    scalars = read_scalars(run_dir)
    if not scalars:
        return _note("No TensorBoard scalars in the run directory: no training curves.")
    panels: dict[str, list[str]] = {}
    for tag in scalars:
        if (panel := _panel(tag)) is not None:
            panels.setdefault(panel, []).append(tag)
    parts = []
    if panels:
        figure = Figure(figsize=(6.5 * len(panels), 4.2), layout="constrained")
        axes_row = figure.subplots(1, len(panels), squeeze=False)[0]
        for axes, panel in zip(axes_row, [p for p in PANELS if p in panels], strict=True):
            for tag in panels[panel]:
                steps, values = scalars[tag]
                # per-step series thin and underneath, per-epoch ones with markers on top
                style = (
                    {"linewidth": 0.8, "alpha": 0.7, "zorder": 1}
                    if len(steps) > 50
                    else {"marker": "o", "markersize": 3, "zorder": 3}
                )
                axes.plot(steps, values, label=_chart_text(tag), **style)
            axes.set(xlabel="step", ylabel=panel, title=panel)
            axes.grid(alpha=0.3)
            axes.legend(fontsize=8)
        chart = files / "charts" / "training_curves.png"
        _save(figure, chart)
        parts.append(_image(run_dir, chart, "training curves"))
    else:
        parts.append(_note("No loss or mAP scalar among the TensorBoard scalars."))
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


def _stage(relative: Path) -> Path:
    """The stage a picture belongs to: its folder above ``batch_*`` (else its folder)."""
    for i, part in enumerate(relative.parts):
        if part.startswith("batch_"):
            return Path(*relative.parts[:i])
    return relative.parent


def _picture_key(path: Path) -> tuple[list[str | int], bool, list[str | int]]:
    """Folder by folder; in a folder ``image.png`` (the plain image) before its overlays."""
    return _natural_key(path.parent), path.stem != "image", _natural_key(Path(path.name))


def pick_pictures(run_dir: str | Path, max_pictures: int) -> tuple[list[Path], int]:
    """Up to ``max_pictures`` PNGs of the run, and how many there are.

    First those at the top of the run directory (``gt_boxes.png``, ...), then those under
    ``pictures/`` by stage: ``final`` stages first, then the latest (``epoch_009`` before
    ``epoch_003``); within a stage folder by folder, each image before its heatmaps.
    """
    run_dir = Path(run_dir)
    pictures = run_dir / "pictures"
    stages: dict[Path, list[Path]] = {}
    for path in pictures.rglob("*.png"):
        stages.setdefault(_stage(path.relative_to(pictures)), []).append(path)
    order = sorted(stages, key=_natural_key, reverse=True)
    order.sort(key=lambda stage: "final" not in stage.parts)
    candidates = sorted(run_dir.glob("*.png"), key=_natural_key) + [
        path for stage in order for path in sorted(stages[stage], key=_picture_key)
    ]
    return candidates[:max_pictures], len(candidates)


def _pictures_section(run_dir: Path, files: Path, max_pictures: int) -> str:
    chosen, total = pick_pictures(run_dir, max_pictures)
    if not total:
        return _note("No pictures (*.png at the top of the run directory or under pictures/).")
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


def _files_section(run_dir: Path) -> str:
    entries = sorted(
        path
        for path in run_dir.iterdir()
        if not path.name.startswith(".") and path.name not in (REPORT_NAME, FILES_DIR)
    )
    if not entries:
        return _note("The run directory holds nothing else.")
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


# --- the page --------------------------------------------------------------------------


def _section(anchor: str, heading: str, build: Callable[[], str]) -> str:
    """One section; if building it fails, a note says why and the report goes on."""
    try:
        body = build()
    except Exception as error:  # a broken file must not cost the rest of the report
        log.warning("run report: section %r failed", heading, exc_info=True)
        body = _note(f"This part could not be made: {type(error).__name__}: {error}")
    return f'<section id="{anchor}"><h2>{escape(heading)}</h2>\n{body}\n</section>'


def default_title(run_dir: Path) -> str:
    """``<task> · <experiment> · <folder>`` from the run's ``.hydra`` files (``default`` when
    no experiment was chosen); ``Run <folder>`` when they are missing or unreadable."""
    hydra_dir = run_dir / ".hydra"
    try:
        task = OmegaConf.load(hydra_dir / "config.yaml").get("task_name")
        hydra_cfg = OmegaConf.load(hydra_dir / "hydra.yaml")
    except (OSError, OmegaConfBaseException, ValueError):
        return f"Run {run_dir.name}"
    experiment = OmegaConf.select(hydra_cfg, "hydra.runtime.choices.experiment") or "default"
    return " · ".join(str(part) for part in (task or "run", experiment, run_dir.name))


def write_run_report(
    run_dir: str | Path,
    title: str | None = None,
    max_pictures: int = 12,
    failure: str | None = None,
) -> Path:
    """Write ``<run_dir>/report.html`` (atomically) and its ``report_files/``; return its path.

    ``report_files/`` is rebuilt from scratch. ``title`` defaults to :func:`default_title`.
    ``failure``: why the run failed, shown at the top of the page.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory (give a run's output dir)")
    files = run_dir / FILES_DIR
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    sections = (
        ("config", "Configuration", lambda: _config_section(run_dir)),
        ("metrics", "Final metrics", lambda: _metrics_section(run_dir)),
        ("per-class", "Per-class results", lambda: _per_class_section(run_dir, files)),
        ("pr-curves", "Precision-recall curves", lambda: _pr_section(run_dir, files)),
        ("training", "Training curves", lambda: _training_section(run_dir, files)),
        ("pictures", "Pictures", lambda: _pictures_section(run_dir, files, max_pictures)),
        ("files", "Files", lambda: _files_section(run_dir)),
    )
    title = title or default_title(run_dir)
    nav = "".join(f'<a href="#{anchor}">{escape(heading)}</a>' for anchor, heading, _ in sections)
    made = f"{run_dir.resolve()} · report made {datetime.now():%Y-%m-%d %H:%M}"
    failed = f'<p class="failed">The run failed: {escape(failure)}</p>\n' if failure else ""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f'<h1>{escape(title)}</h1><p class="meta">{escape(made)}</p>{failed}<nav>{nav}</nav>\n'
        + "\n".join(_section(*section) for section in sections)
        + "\n</body></html>\n"
    )
    path = run_dir / REPORT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def report_finished_run(run_dir: str | Path, failure: str | None = None) -> Path | None:
    """Write the run's report from global rank 0 when its directory exists (also after a
    crash, so the report shows what the run left, and ``failure``: why); ``None`` elsewhere."""
    if rank_zero_only.rank != 0 or not Path(run_dir).is_dir():
        return None
    path = write_run_report(run_dir, failure=failure)
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
