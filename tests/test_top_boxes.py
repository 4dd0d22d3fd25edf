"""The top-box extent diagnostic of the refinement benchmark, on a hand-made run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsl.benchmarks.top_boxes import top_box_area_ratio, top_boxes

GT = {  # image id -> (class, 0-based inclusive box)
    "000001": [("a", (0, 0, 9, 9)), ("b", (20, 20, 39, 39))],
    "000002": [("a", (0, 0, 19, 19)), ("a", (50, 50, 59, 59))],
}
DETECTIONS = {  # class -> devkit lines: id, score, 1-based box
    "a": ["000001 0.9 1 1 5 10", "000001 0.1 1 1 20 20", "000002 0.8 51 51 60 70"],
    "b": ["000001 0.7 21 21 40 40"],
}


def write_run(root: Path) -> tuple[Path, Path]:
    voc, run = root / "VOC2007", root / "run"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    run.mkdir()
    (voc / "classes.txt").write_text("a\nb\n")
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i}\n" for i in GT))
    for image_id, objects in GT.items():
        nodes = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><truncated>0</truncated>"
            f"<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2 + 1}</xmax>"
            f"<ymax>{y2 + 1}</ymax></bndbox></object>"
            for name, (x1, y1, x2, y2) in objects
        )
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>80</width>"
            f"<height>80</height><depth>3</depth></size>{nodes}</annotation>"
        )
    for name, lines in DETECTIONS.items():
        (run / f"comp4_det_trainval_{name}.txt").write_text("".join(f"{x}\n" for x in lines))
    return voc, run


def test_top_boxes_and_their_area_ratio(tmp_path: Path) -> None:
    voc, run = write_run(tmp_path)
    found = top_boxes(run, "trainval", ["a", "b"])
    assert set(found) == {("000001", 0), ("000002", 0), ("000001", 1)}
    np.testing.assert_array_equal(found["000001", 0], [0, 0, 4, 9])  # the 0.9 box, 0-based
    # ratios: 50 / 100 (image 1, a), 200 / 100 (image 2, a: matched to the box it overlaps,
    # not the first), 400 / 400 (image 1, b) -> median 1.0
    assert top_box_area_ratio(run, voc, "trainval") == pytest.approx(1.0)
    (run / "comp4_det_trainval_b.txt").write_text("")  # b has no detection: its pair is left out
    assert top_box_area_ratio(run, voc, "trainval") == pytest.approx((0.5 + 2.0) / 2)
