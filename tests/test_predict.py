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

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from tests.support import CLASSES, CONF_DIR, check_boxes, compose_cfg, train_checkpoint
from wsl.checkpoint import load_run_config
from wsl.predict import OutputDirError, load_model, predict


def image_folder(root: Path, folder: Path, ids: list[str]) -> Path:
    """Generated JPEGs (the second with an upper-case extension), a text file, a corrupt JPEG."""
    folder.mkdir()
    jpegs = root / "VOCdevkit" / "VOC2007" / "JPEGImages"
    for image_id, name in zip(ids, ("first.jpg", "second.JPG"), strict=False):
        shutil.copy(jpegs / f"{image_id}.jpg", folder / name)
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 certainly not a JPEG" * 10)
    return folder


@pytest.fixture(scope="module")
def localizer_run(
    localizer_ckpt: Path, generated_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """``python -m wsl.predict`` with a Localizer checkpoint on a mixed folder."""
    tmp = tmp_path_factory.mktemp("predict_localizer")
    ckpt = localizer_ckpt
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
        expected = torch.sigmoid(model.net(sample["image"][None]).logits[0]).tolist()
    found = list(written["images"]["first.jpg"]["class_scores"].values())
    assert found == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("experiment", ["wsddn_demo", "oicr_demo"])
def test_wsddn_computes_caches_and_scores_selective_search_proposals(
    experiment: str, generated_root: Path, tmp_path: Path
) -> None:
    """WSDDN, and OICR through the same contract (its refined scores)."""
    ckpt = train_checkpoint(
        generated_root, tmp_path / "train", f"experiment={experiment}",
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


# --- output files never replace input files; large images are downscaled -------------------------


def run_predict(ckpt: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m wsl.predict`` with a checkpoint and ``overrides``."""
    return subprocess.run(
        [sys.executable, "-m", "wsl.predict", f"ckpt_path={ckpt}", *overrides],
        cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def stem_folder(root: Path, folder: Path) -> dict[str, bytes]:
    """``photo.jpg`` and ``photo.png`` (two different images sharing a stem); their bytes."""
    folder.mkdir()
    jpegs = root / "VOCdevkit" / "VOC2007" / "JPEGImages"
    shutil.copy(jpegs / "000001.jpg", folder / "photo.jpg")
    Image.open(jpegs / "000002.jpg").save(folder / "photo.png")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_output_dir_that_is_the_input_folder_is_refused(
    localizer_run: dict, generated_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    originals = stem_folder(generated_root, folder)
    result = run_predict(
        localizer_run["ckpt"], f"input={folder}", f"output_dir={folder}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert f"output_dir={folder} is the folder the images are read from" in errors[0]
    # One image of that folder: the same refusal (in this process; the line is the same).
    overrides = [f"ckpt_path={localizer_run['ckpt']}", f"input={folder / 'photo.jpg'}",
                 f"output_dir={folder}"]  # fmt: skip
    with pytest.raises(OutputDirError, match="is the folder the images are read from"):
        predict(compose_cfg("predict", overrides, tmp_path / "run2"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == originals


def test_images_sharing_a_stem_get_their_own_pictures(
    localizer_run: dict, generated_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    originals = stem_folder(generated_root, folder)
    out = tmp_path / "out"
    result = run_predict(localizer_run["ckpt"], f"input={folder}", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr
    written = json.loads((out / "detections.json").read_text())
    for name in ("photo.jpg", "photo.png"):
        pictures = written["images"][name]["pictures"]
        assert pictures[0] == f"{name}.png"  # photo.jpg.png, photo.png.png
        assert all(p.startswith(name) for p in pictures)
        for picture in pictures:
            with Image.open(out / picture) as drawn:
                width, height = written["images"][name]["width"], written["images"][name]["height"]
                factor = math.ceil(384 / min(width, height))
                assert drawn.size == (factor * width, factor * height)
    assert not (out / "photo.png").exists()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == originals


def test_large_image_is_predicted_and_drawn_at_max_size(
    localizer_run: dict, tmp_path: Path
) -> None:
    """A 9000x6000 photo: worked on and drawn at 2000x1333; boxes in pixels of the file."""
    folder = tmp_path / "big"
    folder.mkdir()
    big = Image.new("RGB", (9000, 6000), (200, 40, 40))
    big.paste((30, 30, 220), (3000, 1500, 6000, 4500))  # a blue square in the middle
    big.save(folder / "big.jpg", quality=80)
    out = tmp_path / "out"
    result = run_predict(
        localizer_run["ckpt"], f"input={folder}", f"hydra.run.dir={out}", "score_threshold=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "big.jpg: 9000x6000 pixels, predicted and drawn at 2000x1333 (max_size=2000)" in (
        result.stdout
    )
    entry = json.loads((out / "detections.json").read_text())["images"]["big.jpg"]
    assert (entry["width"], entry["height"]) == (9000, 6000)
    boxes = np.array([d["box"] for d in entry["detections"]])
    assert len(boxes) > 0 and boxes.min() >= 0
    assert boxes[:, 2].max() <= 8999 and boxes[:, 3].max() <= 5999
    assert boxes[:, 2].max() > 2000  # in pixels of the file, not of the 2000-pixel picture
    for picture in entry["pictures"]:
        with Image.open(out / picture) as drawn:
            assert drawn.size == (2000, 1333)


def test_max_size_keeps_scores_and_boxes(localizer_run: dict, tmp_path: Path) -> None:
    """A 4x enlarged image predicted at max_size=500 (about its size before enlarging) gives
    the boxes of the full-size run, in pixels of the file, within a few pixels."""
    folder = tmp_path / "images"
    folder.mkdir()
    with Image.open(localizer_run["folder"] / "first.jpg") as image:
        image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST).save(
            folder / "large.png"
        )
    found = {}
    for max_size in ("null", "500"):
        overrides = [f"ckpt_path={localizer_run['ckpt']}", f"input={folder}", "score_threshold=0",
                     f"max_size={max_size}"]  # fmt: skip
        written = predict(compose_cfg("predict", overrides, tmp_path / f"out_{max_size}"))
        found[max_size] = written["images"]["large.png"]
    full, small = found["null"], found["500"]
    assert small["class_scores"] == pytest.approx(full["class_scores"], abs=0.02)
    assert [d["class"] for d in small["detections"]] == [d["class"] for d in full["detections"]]
    for a, b in zip(small["detections"], full["detections"], strict=True):
        assert a["box"] == pytest.approx(b["box"], abs=12)  # 4 pixels at 500, 3x at full size


def test_wsddn_max_size_scores_the_same_proposals_in_pixels_of_the_file(
    generated_root: Path, tmp_path: Path
) -> None:
    """Downscaled, WSDDN still scores every filtered proposal of the file, reported in pixels
    of the file (the proposals are moved to the working image and back)."""
    ckpt = train_checkpoint(
        generated_root, tmp_path / "train", "experiment=wsddn_demo",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0",
    )  # fmt: skip
    folder = tmp_path / "images"
    folder.mkdir()
    jpegs = generated_root / "VOCdevkit" / "VOC2007" / "JPEGImages"
    with Image.open(jpegs / "000003.jpg") as image:
        large = image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST)
        large.save(folder / "large.png")
    found = {}
    for max_size in ("null", "120"):
        overrides = [
            f"ckpt_path={ckpt}", f"input={folder}", f"paths.cache_dir={tmp_path / 'cache'}",
            "score_threshold=0", "max_boxes=null", "proposals.workers=1",
            "proposals.progress=false", f"max_size={max_size}",
        ]  # fmt: skip
        written = predict(compose_cfg("predict", overrides, tmp_path / f"out_{max_size}"))
        found[max_size] = written["images"]["large.png"]
    assert (found["120"]["width"], found["120"]["height"]) == large.size
    full, small = ({tuple(d["box"]) for d in f["detections"]} for f in found.values())
    assert len(full) > 5 and small == full
    scale = 120 / max(large.size)  # drawn at 120 pixels, then enlarged to 384 as small images
    working = (round(large.width * scale), round(large.height * scale))
    factor = math.ceil(384 / min(working))
    with Image.open(tmp_path / "out_120" / found["120"]["pictures"][0]) as drawn:
        assert drawn.size == (factor * working[0], factor * working[1])
