"""The charts of a run, as matplotlib figures: per-class bars (the one bar chart of ``wsl``,
used by the test results, the periodic evaluation's loggers and the report), precision-recall
curves and training curves; :func:`save_figure` writes one as a PNG, :func:`write_ap_chart` the
test's class-wise AP."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from wsl.runtime.atomic import atomic_path

# Shown for a value that is null/NaN (undefined, e.g. a class without positives).
DASH = "\N{EN DASH}"
# Training-curve panels, left to right.
PANELS = ("loss", "mAP")


def chart_text(text: str) -> str:
    """Text for matplotlib, shown as written (``$`` would start mathtext)."""
    return text.replace("$", r"\$")


def _undefined(value: float | None) -> bool:
    return value is None or math.isnan(value)


def bar_chart(
    series: Mapping[str, Mapping[str, float | None]], title: str, value_label: str = "AP"
) -> Figure:
    """Horizontal bars, one group per label (a class), one bar per series (``AP``,
    ``CorLoc``, ...), each value printed beside its bar; an undefined value (``None``/NaN, e.g.
    a class without positives) has no bar and a dash. A dashed line per series marks the mean
    of its defined values."""
    labels = list(dict.fromkeys(name for values in series.values() for name in values))
    height = 0.8 / len(series)
    size = (8, max(2.5, 1.0 + 0.25 * len(labels) * (0.5 + 0.5 * len(series))))
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.add_subplot()
    rows = np.arange(len(labels))
    largest = 1.0
    for i, (name, values) in enumerate(series.items()):
        row = [values.get(label) for label in labels]
        widths = [0.0 if _undefined(v) else float(v) for v in row]
        largest = max([largest, *widths])
        offset = (i - (len(series) - 1) / 2) * height
        bars = axes.barh(rows + offset, widths, height, label=name)
        texts = [DASH if _undefined(v) else f"{v:.3f}" for v in row]
        axes.bar_label(bars, labels=texts, padding=2, fontsize=7)
        defined = [w for v, w in zip(row, widths, strict=True) if not _undefined(v)]
        if defined:
            mean = sum(defined) / len(defined)
            colour = bars.patches[0].get_facecolor()
            axes.axvline(mean, color=colour, linestyle="--", label=f"{name} mean {mean:.3f}")
    axes.set_yticks(rows, [chart_text(label) for label in labels])
    axes.invert_yaxis()
    axes.set_xlim(0, 1.12 * largest)
    axes.set_xlabel(value_label)
    axes.set_title(chart_text(title))
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return figure


def pr_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], labels: Sequence[str]) -> Figure:
    """Precision-recall curves (``pr_curves.json`` entries), one line per class, ``labels``
    in the legend."""
    figure = Figure(figsize=(8, 5.5))
    axes = figure.add_subplot()
    colors = matplotlib.colormaps["tab10" if len(curves) <= 10 else "tab20"].colors
    for i, (curve, label) in enumerate(zip(curves.values(), labels, strict=True)):
        axes.plot(curve["recall"], curve["precision"], label=label, color=colors[i % len(colors)])
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    axes.set_title("Precision-recall per class")
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return figure


def panel(tag: str) -> str | None:
    """Which training-curve panel shows ``tag``: losses and mAPs; ``None``: neither."""
    name = tag.rsplit("/", 1)[-1]
    if name.startswith("loss"):
        return "loss"
    return "mAP" if "mAP" in name else None


def training_figure(
    scalars: Mapping[str, tuple[np.ndarray, np.ndarray]], panels: Mapping[str, list[str]]
) -> Figure:
    """One panel per entry of ``panels`` (in :data:`PANELS` order) with its tags' curves."""
    figure = Figure(figsize=(6.5 * len(panels), 4.2), layout="constrained")
    axes_row = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, name in zip(axes_row, [p for p in PANELS if p in panels], strict=True):
        for tag in panels[name]:
            steps, values = scalars[tag]
            # per-step series thin and underneath, per-epoch ones with markers on top
            style = (
                {"linewidth": 0.8, "alpha": 0.7, "zorder": 1}
                if len(steps) > 50
                else {"marker": "o", "markersize": 3, "zorder": 3}
            )
            axes.plot(steps, values, label=chart_text(tag), **style)
        axes.set(xlabel="step", ylabel=name, title=name)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` (its folder made if missing), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def write_ap_chart(
    path: str | Path, ap_per_class: Mapping[str, float], title: str = "AP per class"
) -> Path:
    """Write a bar chart of ``ap_per_class`` (``{class: AP}``, NaN: no bar) with the mean
    over the defined values as a dashed line, as a PNG (atomic)."""
    return save_figure(bar_chart({"AP": ap_per_class}, title), path)
