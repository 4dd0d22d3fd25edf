"""``wsl.predict`` on real files with real checkpoints: a briefly trained Localizer on a folder
(two images, a text file, a corrupt JPEG) through the command line, and a WSDDN on selective-search
proposals it computes and caches."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import CONF_DIR
from tests.test_config import compose_cfg
from wsl.evaluate import load_run_config
from wsl.predict import load_model, predict
from wsl.train import train

CLASSES = ["circle", "square", "triangle", "cross"]  # the generated set's classes.txt
QUICK = [
    "data.num_workers=0", "data.batch_size=8", "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false", "logger=none", "test=false",
    "callbacks.model_checkpoint=null",  # last.ckpt only (a WSDDN checkpoint is large)
]  # fmt: skip


def train_checkpoint(root: Path, run_dir: Path, *extra: str) -> Path:
    """Train briefly on the generated set; return the checkpoint."""
    train(compose_cfg("train", [f"data.root={root}", *QUICK, *extra], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def image_folder(root: Path, folder: Path, ids: list[str]) -> Path:
    """Generated JPEGs (the second with an upper-case extension), a text file, a corrupt JPEG."""
    folder.mkdir()
    jpegs = root / "VOCdevkit" / "VOC2007" / "JPEGImages"
    for image_id, name in zip(ids, ("first.jpg", "second.JPG"), strict=False):
        shutil.copy(jpegs / f"{image_id}.jpg", folder / name)
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 certainly not a JPEG" * 10)
    return folder


def check_boxes(entry: dict[str, Any], threshold: float, max_boxes: int) -> None:
    """Boxes inside the image, scores at least ``threshold`` and best first."""
    detections = entry["detections"]
    assert 0 < len(detections) <= max_boxes
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True) and min(scores) >= threshold
    for d in detections:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= entry["width"] - 1 and 0 <= y1 <= y2 <= entry["height"] - 1
        assert d["class"] in CLASSES


@pytest.fixture(scope="module")
def localizer_run(generated_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``python -m wsl.predict`` with a Localizer checkpoint on a mixed folder."""
    tmp = tmp_path_factory.mktemp("predict_localizer")
    ckpt = train_checkpoint(
        generated_root, tmp / "train", "experiment=localizer_demo",
        "callbacks.heatmaps.num_train_images=0", "callbacks.heatmaps.num_final_images=0",
    )  # fmt: skip
    folder = image_folder(generated_root, tmp / "images", ["000001", "000002"])
    out = tmp / "predicted"
    result = subprocess.run(
        [sys.executable, "-m", "wsl.predict", f"ckpt_path={ckpt}", f"input={folder}",
         f"hydra.run.dir={out}", "score_threshold=0.01", "max_boxes=4"],
        cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return {"ckpt": ckpt, "folder": folder, "out": out, "result": result}


def test_localizer_folder_writes_boxes_for_images_only(localizer_run: dict) -> None:
    result, out = localizer_run["result"], localizer_run["out"]
    assert result.returncode == 1, result.stderr  # broken.jpg failed
    written = json.loads((out / "detections.json").read_text())
    assert set(written["images"]) == {"first.jpg", "second.JPG"}
    for name, entry in written["images"].items():
        with Image.open(localizer_run["folder"] / name) as image:
            assert (entry["width"], entry["height"]) == image.size
        check_boxes(entry, threshold=0.01, max_boxes=4)
        assert list(entry["class_scores"]) == CLASSES
        # The annotated image, and one heatmap per predicted class (>= 0.5, else the best one).
        predicted = [c for c, s in entry["class_scores"].items() if s >= 0.5] or [
            max(entry["class_scores"], key=entry["class_scores"].get)
        ]
        stem = Path(name).stem
        assert entry["pictures"] == [f"{stem}.png"] + [f"{stem}_{c}.png" for c in predicted]
        factor = math.ceil(384 / min(entry["width"], entry["height"]))  # small images enlarged
        for picture in entry["pictures"]:
            with Image.open(out / picture) as drawn:
                assert drawn.size == (factor * entry["width"], factor * entry["height"])
        assert {d["class"] for d in entry["detections"]} <= set(predicted)


def test_localizer_folder_reports_skipped_and_failed_files(localizer_run: dict) -> None:
    result, out = localizer_run["result"], localizer_run["out"]
    written = json.loads((out / "detections.json").read_text())
    assert set(written["skipped"]) == {"notes.txt"}
    assert set(written["failed"]) == {"broken.jpg"}
    assert "cannot decode image" in written["failed"]["broken.jpg"]
    error_lines = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(error_lines) == 1 and "broken.jpg: cannot decode image" in error_lines[0]
    assert any("skipped notes.txt" in line for line in result.stdout.splitlines())
    assert "predicted 2 images, skipped 1 files, 1 failed" in result.stdout


def test_localizer_scores_match_the_training_pipeline(localizer_run: dict) -> None:
    """The class scores of a file equal the model's on the data set's own eval sample."""
    run_cfg = load_run_config(localizer_run["ckpt"])
    written = json.loads((localizer_run["out"] / "detections.json").read_text())
    model, _ = load_model(localizer_run["ckpt"], torch.device("cpu"))
    dataset = hydra.utils.instantiate(run_cfg.data).dataset("trainval")
    sample = next(dataset[i] for i in range(len(dataset)) if dataset.index[i].image_id == "000001")
    with torch.no_grad():
        expected = torch.sigmoid(model(sample["image"][None]).logits[0]).tolist()
    found = list(written["images"]["first.jpg"]["class_scores"].values())
    assert found == pytest.approx(expected, abs=1e-5)


def test_wsddn_computes_caches_and_scores_selective_search_proposals(
    generated_root: Path, tmp_path: Path
) -> None:
    ckpt = train_checkpoint(
        generated_root, tmp_path / "train", "experiment=wsddn_demo",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0",
    )  # fmt: skip
    folder = image_folder(generated_root, tmp_path / "images", ["000003"])
    (folder / "notes.txt").unlink()
    cache = tmp_path / "cache"
    overrides = [
        f"ckpt_path={ckpt}", f"input={folder}", f"paths.cache_dir={cache}", "score_threshold=0",
        "max_boxes=5", "proposals.workers=1", "proposals.progress=false",
    ]  # fmt: skip
    written = predict(compose_cfg("predict", overrides, tmp_path / "out"))
    assert set(written["images"]) == {"first.jpg"}
    assert "OpenCV cannot decode it" in written["failed"]["broken.jpg"]
    cached = list(cache.rglob("*.npy"))
    assert len(cached) == 1  # the good image's proposals
    entry = written["images"]["first.jpg"]
    check_boxes(entry, threshold=0, max_boxes=5)
    # Every detection is a cached selective-search proposal, in pixels of the image on disk.
    proposals = np.load(cached[0])
    for d in entry["detections"]:
        assert np.abs(proposals - np.array(d["box"])).max(axis=1).min() < 0.01, d["box"]
    assert (tmp_path / "out" / "first.png").is_file()
    # A second run reads the cache instead of searching again.
    mtime = cached[0].stat().st_mtime_ns
    again = predict(compose_cfg("predict", overrides, tmp_path / "again"))
    assert again["images"] == written["images"] and cached[0].stat().st_mtime_ns == mtime
