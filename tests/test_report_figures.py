"""The one bar chart (test results, periodic evaluation, report) and the one JSON sanitiser,
checked against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from wsl.reporting.figures import bar_chart, save_figure, write_ap_chart
from wsl.runtime.json_safe import json_safe


def _bars(figure: Figure) -> tuple[Axes, list[tuple[float, float]]]:
    """The chart's axes and its bars as (centre row, width)."""
    [axes] = figure.axes
    return axes, [(round(p.get_y() + p.get_height() / 2, 6), p.get_width()) for p in axes.patches]


def test_bar_chart_groups_series_by_class_and_marks_undefined_values() -> None:
    series = {"AP": {"cat": 0.5, "dog": math.nan}, "CorLoc": {"cat": 0.25, "dog": 1.0}}
    axes, bars = _bars(bar_chart(series, "AP per class"))
    # two classes at rows 0 and 1, two bars each 0.4 high, AP above (-0.2), CorLoc below
    assert bars == [(-0.2, 0.5), (0.8, 0.0), (0.2, 0.25), (1.2, 1.0)]
    texts = [t.get_text() for t in axes.texts]
    assert texts == ["0.500", "\N{EN DASH}", "0.250", "1.000"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["cat", "dog"]
    # the means of the defined values: AP 0.5 (NaN left out), CorLoc (0.25 + 1) / 2
    means = [line.get_xdata()[0] for line in axes.lines]
    assert means == pytest.approx([0.5, 0.625])
    assert axes.get_legend_handles_labels()[1][:2] == ["AP mean 0.500", "CorLoc mean 0.625"]
    assert axes.get_xlim() == pytest.approx((0.0, 1.12))


def test_bar_chart_widens_for_values_above_one_and_draws_no_data() -> None:
    axes, _ = _bars(bar_chart({"count": {"a": 3.0}}, "counts", value_label="count"))
    assert axes.get_xlim() == pytest.approx((0.0, 3.36))
    axes, bars = _bars(bar_chart({"eval/AP": {}}, "eval/AP"))
    assert bars == [] and len(axes.lines) == 0


def test_ap_chart_file_is_a_png_with_one_bar_per_class(tmp_path: Path) -> None:
    path = write_ap_chart(tmp_path / "class_ap.png", {"circle": 1.0, "cross": math.nan})
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class_ap.png"]  # no temporary left
    figure = bar_chart({"AP": {"x": 0.3}}, "t")
    assert save_figure(figure, tmp_path / "charts" / "x.png").is_file()  # folder made


def test_json_safe_turns_every_nan_into_null_and_keeps_the_rest() -> None:
    value = {
        "mAP": float("nan"),
        "per_class": {"cat": np.float64("nan"), 3: 0.5},
        "curve": [1.0, float("nan")],
        "name": "nan",
        "count": 2,
    }
    safe = json_safe(value)
    assert safe == {
        "mAP": None,
        "per_class": {"cat": None, "3": 0.5},
        "curve": [1.0, None],
        "name": "nan",
        "count": 2,
    }
    assert json.loads(json.dumps(safe, allow_nan=False)) == safe
