"""report.html: every part of a run shows up, links resolve, text is escaped, and missing or
broken parts become notes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from tests.support import CONF_DIR
from wsl.evaluation.results_files import write_results
from wsl.evaluation.voc_detection import ClassAP, voc_ap
from wsl.reporting.figures import DASH
from wsl.reporting.pr_curves import curve_points, write_pr_curves
from wsl.reporting.run_files import pick_pictures, read_scalars
from wsl.reporting.run_report import main, write_run_report

OVERRIDES = ["experiment=localizer_demo", "trainer.max_epochs=3"]
ODD_CLASS = "<b>cat</b> & co"


def _write_config(run_dir: Path) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml`` as Hydra writes them (unresolved)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=OVERRIDES)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(OVERRIDES), run_dir / ".hydra" / "overrides.yaml")


def _write_metrics(run_dir: Path) -> None:
    write_results(
        run_dir,
        {"cls_mAP": 0.123456, "det_mAP": 0.5, "CorLoc": float("nan")},
        {
            "cls_AP": {"dog": 0.25, ODD_CLASS: 0.75},
            "det_AP": {"dog": 0.3333333, ODD_CLASS: float("nan")},
        },
    )


def _write_events(run_dir: Path) -> None:
    """Scalars as Lightning logs them: loss per step, val loss and mAP per epoch."""
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    for step in range(10):
        writer.add_scalar("train/loss_step", 1.0 / (step + 1), step)
    for step, loss, m_ap in ((4, 0.8, 0.2), (9, 0.6, 0.4)):
        writer.add_scalar("val/loss", loss, step)
        writer.add_scalar("val/cls_mAP", m_ap, step)
    writer.add_scalar("lr-SGD", 0.01, 9)
    writer.close()


def _curve(num_detections: int, num_positives: int, seed: int) -> ClassAP:
    tp = np.random.default_rng(seed).random(num_detections) < 0.3
    tp_cum = np.cumsum(tp, dtype=np.float64)
    precision = tp_cum / np.arange(1, num_detections + 1)
    recall = tp_cum / num_positives
    return ClassAP(voc_ap(recall, precision), precision, recall, num_positives)


def _write_picture(path: Path, color: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), color).save(path)


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "2024-01-01_00-00-00"
    run_dir.mkdir()
    _write_config(run_dir)
    _write_metrics(run_dir)
    _write_events(run_dir)
    write_pr_curves(run_dir, {"dog": _curve(50, 12, 0), ODD_CLASS: _curve(30, 8, 1)})
    _write_picture(run_dir / "pictures/heatmaps/final/batch_0/000007/dog.png", "red")
    _write_picture(
        run_dir / "pictures/heatmaps/train/epoch_000/step_0/batch_0/000003/dog.png", "blue"
    )
    return run_dir


def _image_links(page: str) -> list[str]:
    return [unquote(src) for src in re.findall(r'<img[^>]* src="([^"]+)"', page)]


def test_full_report_shows_every_part(full_run: Path) -> None:
    path = write_run_report(full_run, title="Demo <run>")
    page = path.read_text(encoding="utf-8")
    assert path == full_run / "report.html"
    assert "<title>Demo &lt;run&gt;</title>" in page
    # configuration: overrides, resolved key settings, the full file
    assert "experiment=localizer_demo trainer.max_epochs=3" in page
    assert "wsl.training.module.WSLModule" in page
    assert re.search(r"<code>trainer.max_epochs</code></td><td>3</td>", page)
    assert re.search(r"<code>data.root</code></td><td>\S*outputs/datasets/generated</td>", page)
    assert "Full config" in page and "heatmap_boxes:" in page
    # metrics: 4 decimals, NaN/null as a dash, class names escaped
    assert '<td>cls_mAP</td><td class="num">0.1235</td>' in page
    assert f'<td>CorLoc</td><td class="num">{DASH}</td>' in page
    assert '<td>dog</td><td class="num">0.2500</td><td class="num">0.3333</td>' in page
    escaped = "&lt;b&gt;cat&lt;/b&gt; &amp; co"
    assert f'<td>{escaped}</td><td class="num">0.7500</td><td class="num">{DASH}</td>' in page
    assert ODD_CLASS not in page
    # training curves read back: last values of the scalars
    assert '<td>val/loss</td><td class="num">2</td><td class="num">9</td>' in page
    assert '<td class="num">0.4</td>' in page  # val/cls_mAP at step 9
    assert 'class="note"' not in page
    links = _image_links(page)
    assert len(links) == 5  # AP chart, PR curves, training curves, 2 pictures
    for link in links:
        assert link.startswith("report_files/") and (full_run / link).is_file(), link
    charts = full_run / "report_files" / "charts"
    for name in ("ap_per_class", "pr_curves", "training_curves"):
        assert (charts / f"{name}.png").stat().st_size > 1024, name
    assert links[-2:] == [
        "report_files/pictures/heatmaps/final/batch_0/000007/dog.png",
        "report_files/pictures/heatmaps/train/epoch_000/step_0/batch_0/000003/dog.png",
    ]


def test_report_of_a_run_with_only_metrics_notes_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_metrics(tmp_path)
    path = main([str(tmp_path)])
    page = path.read_text(encoding="utf-8")
    assert capsys.readouterr().out.strip() == str(path)
    assert '<td>det_mAP</td><td class="num">0.5000</td>' in page
    for missing in (
        "No .hydra/overrides.yaml",
        "No .hydra/config.yaml",
        "No pr_curves.json",
        "No TensorBoard scalars",
        "No pictures",
    ):
        assert missing in page, missing
    assert _image_links(page) == ["report_files/charts/ap_per_class.png"]


def test_a_broken_file_becomes_a_note_and_the_rest_still_renders(full_run: Path) -> None:
    (full_run / "pr_curves.json").write_text("{not json")
    (full_run / "report_files" / "stale.png").parent.mkdir()
    (full_run / "report_files" / "stale.png").write_bytes(b"old")
    page = write_run_report(full_run).read_text(encoding="utf-8")
    assert "This part could not be made: JSONDecodeError" in page
    assert "<title>Run 2024-01-01_00-00-00</title>" in page
    assert '<td>cls_mAP</td><td class="num">0.1235</td>' in page
    assert not (full_run / "report_files" / "stale.png").exists()
    assert len(_image_links(page)) == 4


def test_read_scalars_gives_every_point_in_step_order(full_run: Path) -> None:
    scalars = read_scalars(full_run)
    assert set(scalars) == {"train/loss_step", "val/loss", "val/cls_mAP", "lr-SGD"}
    steps, values = scalars["train/loss_step"]
    np.testing.assert_array_equal(steps, np.arange(10))
    np.testing.assert_allclose(values, 1.0 / np.arange(1, 11), rtol=1e-6)
    steps, values = scalars["val/loss"]
    np.testing.assert_array_equal(steps, [4, 9])
    np.testing.assert_allclose(values, [0.8, 0.6], rtol=1e-6)


def test_pick_pictures_order_top_level_final_latest_images_first(tmp_path: Path) -> None:
    names = [
        "pictures/heatmaps/train/epoch_002/step_20/batch_0/000001/dog.png",
        "pictures/heatmaps/train/epoch_010/step_100/batch_0/000001/dog.png",
        "pictures/heatmaps/final/batch_1/000009/image.png",
        "pictures/heatmaps/final/batch_0/000004/image.png",
        "pictures/heatmaps/final/batch_0/000004/dog.png",
        "gt_boxes.png",
    ]
    for name in names:
        _write_picture(tmp_path / name, "green")
    chosen, total = pick_pictures(tmp_path, 5)
    assert total == 6
    assert [p.relative_to(tmp_path).as_posix() for p in chosen] == [
        "gt_boxes.png",
        "pictures/heatmaps/final/batch_0/000004/image.png",
        "pictures/heatmaps/final/batch_0/000004/dog.png",
        "pictures/heatmaps/final/batch_1/000009/image.png",
        "pictures/heatmaps/train/epoch_010/step_100/batch_0/000001/dog.png",
    ]


def test_write_pr_curves_thins_long_curves_and_keeps_their_shape(tmp_path: Path) -> None:
    long, short = _curve(20_000, 3_000, 2), _curve(40, 10, 3)
    no_positives = ClassAP(float("nan"), np.array([0.0, 0.0]), np.full(2, np.nan), 0)
    path = write_pr_curves(tmp_path, {"long": long, "short": short, "none": no_positives})
    curves = json.loads(path.read_text())
    assert path == tmp_path / "pr_curves.json"
    assert curves["short"]["precision"] == pytest.approx(short.precision.tolist())
    assert curves["short"]["ap"] == pytest.approx(short.ap)
    assert curves["none"] == {"precision": [0.0, 0.0], "recall": [None, None], "ap": None}
    precision, recall = np.array(curves["long"]["precision"]), np.array(curves["long"]["recall"])
    assert 100 < len(precision) <= 500
    assert curves["long"]["ap"] == pytest.approx(long.ap)
    assert (precision[0], recall[-1]) == (long.precision[0], long.recall[-1])
    assert precision.max() == long.precision.max()
    assert np.all(np.diff(recall) >= 0)
    assert voc_ap(recall, precision) == pytest.approx(long.ap, abs=0.01)
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(
        voc_ap(long.recall, long.precision, use_07_metric=False), abs=0.01
    )


def test_curve_points_keeps_each_recall_bins_ends_and_precision_extremes() -> None:
    curve = _curve(5_000, 800, 4)
    keep = curve_points(curve.precision, curve.recall, 100)
    assert len(keep) <= 100 and np.all(np.diff(keep) > 0)
    bins = np.minimum((curve.recall * 25).astype(int), 24)  # 100 // 4 bins
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        kept = np.intersect1d(keep, members)
        assert kept[0] == members[0] and kept[-1] == members[-1], b
        assert curve.precision[kept].max() == curve.precision[members].max(), b
        assert curve.precision[kept].min() == curve.precision[members].min(), b


def test_curve_points_keeps_everything_of_a_short_curve_and_needs_four_points() -> None:
    np.testing.assert_array_equal(curve_points(np.ones(3), np.ones(3), 4), [0, 1, 2])
    with pytest.raises(ValueError, match="at least 4"):
        curve_points(np.ones(3), np.ones(3), 3)
