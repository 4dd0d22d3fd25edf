"""Bad input to ``wsl.load(ckpt).detect()`` and ``python -m wsl.predict`` gets one clear line:
tensors outside uint8 or float [0, 1], images without pixels or too elongated for the network;
photos with an EXIF orientation are read upright; named pipes and other non-regular files are
skipped or refused, never opened. Uses the session's briefly trained Localizer (conftest)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import ExifTags, Image, ImageOps
from torchvision.transforms.v2.functional import pil_to_tensor

import wsl
from tests.support import CLASSES, CONF_DIR, check_boxes, compose_cfg, train_checkpoint
from wsl.data.bad_input import DataError
from wsl.data.images import read_upright_rgb
from wsl.detector import Detector, as_uint8_image, load_model
from wsl.predict import DETECTIONS_FILE, find_images, predict
from wsl.structures.boxes import upright_boxes
from wsl.structures.detections import Detections

SOURCE = "000001"  # a generated image, 125x117


def source_image(root: Path, image_id: str = SOURCE) -> Path:
    return root / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{image_id}.jpg"


def save_turned(upright: Image.Image, path: Path) -> Path:
    """``upright`` stored as a phone stores a photo taken sideways: its pixels turned 90°
    counter-clockwise, with EXIF Orientation 6 ("rotate 90° clockwise to display")."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=100, subsampling=0)
    return path


def same(a: Detections, b: Detections) -> None:
    assert a.classes.tolist() == b.classes.tolist()
    torch.testing.assert_close(a.boxes, b.boxes)
    torch.testing.assert_close(a.scores, b.scores)


def inside(found: Detections, width: int, height: int) -> bool:
    """Whether every box is inside a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = found.boxes.T
    return all(bool(ok.all()) for ok in (x1 >= 0, y1 >= 0, x2 <= width - 1, y2 <= height - 1))


@contextmanager
def unblocking(fifo: Path) -> Iterator[None]:
    """While the block runs, a reader that opens ``fifo`` is let through after 5 s (a writer
    opens and closes it: the reader sees an empty file), so a test fails instead of hanging."""
    done = threading.Event()

    def writer() -> None:
        while not done.wait(5.0):
            with suppress(OSError):  # ENXIO: no reader waiting
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.fixture(scope="module")
def detector(localizer_ckpt: Path) -> Detector:
    return wsl.load(localizer_ckpt, device="cpu", score_threshold=0.0)


# --- detect(): what is accepted, and one line for everything else --------------------------------


def with_value(value: float) -> torch.Tensor:
    image = torch.full((3, 8, 8), 0.5)
    image[1, 2, 3] = value
    return image


SHAPE = r"image 0: an image tensor must be 3xHxW \(RGB\), got "
FLOAT = r"image 0: a float tensor must hold "
REFUSED: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("float 0..255", lambda: torch.full((3, 8, 8), 255.0), ValueError,
     FLOAT + r"values in \[0, 1\], found max 255\.0; divide uint8-range values by 255 or pass "
     r"a uint8 tensor"),
    ("normalized", lambda: with_value(-2.1), ValueError,
     FLOAT + r"values in \[0, 1\], found min -2\.1; give the image before normalization \(the "
     r"model normalizes it\)"),
    ("NaN", lambda: with_value(float("nan")), ValueError,
     FLOAT + r"finite values in \[0, 1\], found 1 NaN or infinite values"),
    ("inf", lambda: with_value(float("inf")), ValueError,
     FLOAT + r"finite values in \[0, 1\], found 1 NaN or infinite values"),
    ("3x0x0", lambda: torch.zeros(3, 0, 0, dtype=torch.uint8), ValueError,
     r"image 0: a 3x0x0 tensor has no pixels; an image needs at least 1x1 pixels"),
    ("3x5x0 float", lambda: torch.zeros(3, 5, 0), ValueError,
     r"image 0: a 3x5x0 tensor has no pixels; an image needs at least 1x1 pixels"),
    ("int64", lambda: torch.zeros(3, 8, 8, dtype=torch.int64), ValueError,
     r"image 0: an image tensor must be uint8 \(0\.\.255\) or floating point in \[0, 1\], got "
     r"torch\.int64; convert 0\.\.255 values with \.to\(torch\.uint8\)"),
    ("grey", lambda: torch.zeros(1, 8, 8, dtype=torch.uint8), ValueError,
     SHAPE + r"\(1, 8, 8\)"),
    ("HxWx3", lambda: torch.zeros(8, 8, 3, dtype=torch.uint8), ValueError,
     SHAPE + r"\(8, 8, 3\); move channels first \(image\.permute\(2, 0, 1\)\)"),
    ("batch", lambda: torch.zeros(2, 3, 8, 8), ValueError,
     SHAPE + r"\(2, 3, 8, 8\); give a batch as a list of 3xHxW tensors \(list\(batch\)\)"),
    ("PIL 0x0", lambda: Image.new("RGB", (0, 0)), ValueError,
     r"image 0: a PIL image of 0x0 pixels; an image needs at least 1x1 pixels"),
    ("numpy", lambda: np.zeros((8, 8, 3), dtype=np.uint8), TypeError,
     r"image 0: cannot read an image from a ndarray; give an image file path, a PIL image, a "
     r"uint8 3xHxW RGB tensor \(0\.\.255\) or a float 3xHxW RGB tensor in \[0, 1\] \(an HxWx3 "
     r"array: torch\.from_numpy\(array\)\.permute\(2, 0, 1\)\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_bad_images_are_refused_in_one_line(
    detector: Detector, image: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}$") as raised:
        detector.detect(image())
    assert "\n" not in str(raised.value)


def test_refusal_names_the_image_and_comes_before_any_work(
    detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    def predicted(batch: object) -> None:
        pytest.fail("an image was predicted before the bad one was refused")

    monkeypatch.setattr(detector.module, "detect_with_evidence", predicted)
    good = torch.zeros(3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"^image 2: a float tensor .* found max 255\.0"):
        detector.detect([good, good.float() / 255, good.float() + 255])


def test_accepted_edges_are_detected(detector: Detector) -> None:
    """1x1 pixels, float 0 and 1 exactly, float64, a tensor that requires grad."""
    ones = torch.ones(3, 1, 1, dtype=torch.float64, requires_grad=True)
    found = detector.detect(
        [torch.zeros(3, 1, 1), ones, torch.full((3, 1, 1), 255, dtype=torch.uint8)]
    )
    assert all(inside(f, 1, 1) and len(f.classes) > 0 for f in found)
    same(found[1], found[2])  # float 1.0 is uint8 255


def test_too_elongated_image_is_refused(localizer_ckpt: Path) -> None:
    """With a ``shortest_side`` eval transform capped at 200 pixels, a 2000x1 image would reach
    the network as 200x0, a 2000x10 one as 200x1 and a 200x40 one as 200x40: too few for
    the Localizer's AlexNet and 3x3 convolution (63 pixels a side); 200x100 fits."""
    module, run_cfg = load_model(localizer_ckpt, torch.device("cpu"))
    run_cfg.data.eval_transform = OmegaConf.create(
        {"resize": "shortest_side", "scales": [160], "max_size": 200, "flip": False}
    )
    detector = Detector(module, run_cfg, score_threshold=0.0)
    for height, width, working in ((1, 2000, "200x0"), (10, 2000, "200x1"), (40, 200, "200x40")):
        with pytest.raises(DataError, match=(
            rf"^image 0: {width}x{height} pixels is too elongated for this model: its eval "
            rf"transform resizes it to {working}, smaller than its network takes; crop the "
            r"image or pad it nearer to a square$"
        )):  # fmt: skip
            detector.detect(torch.zeros(3, height, width, dtype=torch.uint8))
    (found,) = detector.detect(torch.zeros(3, 100, 200, dtype=torch.uint8))
    assert inside(found, 200, 100)


def test_named_pipe_and_missing_file_are_refused(detector: Detector, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    refused = r"pipe\.jpg: a named pipe \(FIFO\), not an image file: give a regular image file"
    with unblocking(fifo), pytest.raises(DataError, match=refused):
        detector.detect(fifo)
    with pytest.raises(DataError, match=r"pipe\.jpg: a named pipe \(FIFO\), not an image file or"):
        find_images(fifo)  # input=pipe.jpg
    with pytest.raises(DataError, match=r"missing\.jpg: no such file$"):
        detector.detect(tmp_path / "missing.jpg")


# --- EXIF orientation: photos are read upright ----------------------------------------------------


def test_upright_boxes_follow_exif_transpose(tmp_path: Path) -> None:
    """A box marked on a stored 7x5 image lands, for every EXIF orientation, where
    ``exif_transpose`` (through :func:`read_upright_rgb`) moves its pixels."""
    stored = np.zeros((5, 7), dtype=np.uint8)
    stored[1:3, 1:4] = 255  # inclusive box x1=1, y1=1, x2=3, y2=2
    box = np.array([[1, 1, 3, 2]], dtype=np.float32)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        path = tmp_path / f"{orientation}.png"
        Image.fromarray(stored).save(path, exif=exif)
        upright, found = read_upright_rgb(path)
        assert found == orientation
        with Image.open(path) as opened:
            assert upright.tobytes() == ImageOps.exif_transpose(opened).convert("RGB").tobytes()
        ys, xs = np.nonzero(np.asarray(upright)[:, :, 0])
        expected = [[xs.min(), ys.min(), xs.max(), ys.max()]]
        np.testing.assert_array_equal(upright_boxes(box, orientation, 7, 5), expected)


def test_detect_reads_files_and_pil_images_upright(
    detector: Detector, generated_root: Path, tmp_path: Path
) -> None:
    with Image.open(source_image(generated_root)) as opened:
        upright = opened.convert("RGB")
    path = save_turned(upright, tmp_path / "turned.jpg")
    with Image.open(path) as opened:
        assert opened.size == (upright.height, upright.width)  # stored sideways
        expected = pil_to_tensor(ImageOps.exif_transpose(opened).convert("RGB"))
        by_pil = detector.detect(opened)[0]
    torch.testing.assert_close(as_uint8_image(path), expected)  # what the model works on
    by_path, by_tensor, by_source = detector.detect([path, expected, upright])
    same(by_path, by_tensor)
    same(by_pil, by_tensor)
    assert inside(by_path, upright.width, upright.height)
    # the photo as shot (JPEG-resaved)
    assert by_path.classes[:1].tolist() == by_source.classes[:1].tolist()
    torch.testing.assert_close(by_path.scores[:1], by_source.scores[:1], atol=0.02, rtol=0)


# --- wsl.predict on a folder with a phone photo, a named pipe, a folder and a broken link ---------


@pytest.fixture(scope="module")
def predict_run(
    localizer_ckpt: Path, generated_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """``python -m wsl.predict`` on ``upright.jpg``, ``turned.jpg`` (the same photo stored
    sideways with an EXIF orientation), ``pipe.jpg`` (a FIFO nothing writes to: opening it
    waits forever), ``album.jpg/`` (a folder) and ``gone.jpg`` (a broken link)."""
    tmp = tmp_path_factory.mktemp("predict_inputs")
    folder = tmp / "photos"
    folder.mkdir()
    shutil.copy(source_image(generated_root), folder / "upright.jpg")
    with Image.open(folder / "upright.jpg") as opened:
        save_turned(opened.convert("RGB"), folder / "turned.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "album.jpg").mkdir()
    (folder / "gone.jpg").symlink_to(folder / "deleted.jpg")
    out = tmp / "predicted"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "wsl.predict", f"ckpt_path={localizer_ckpt}",
             f"input={folder}", f"hydra.run.dir={out}", "score_threshold=0.01"],
            cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("wsl.predict did not finish in 90 s: it opened pipe.jpg, a named pipe")
    written = json.loads((out / DETECTIONS_FILE).read_text())
    return {"folder": folder, "out": out, "result": result, "written": written}


def test_predict_skips_non_regular_files_unopened(predict_run: dict) -> None:
    result, written = predict_run["result"], predict_run["written"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(written["images"]) == {"upright.jpg", "turned.jpg"}
    assert written["skipped"] == {
        "album.jpg": "a folder (subfolders are not searched)",
        "gone.jpg": "a broken link, not a regular file (never opened)",
        "pipe.jpg": "a named pipe (FIFO), not a regular file (never opened)",
    }
    warnings = [line for line in result.stdout.splitlines() if "WARNING" in line]
    for name, why in written["skipped"].items():
        assert sum(f"skipped {name}: {why}" in line for line in warnings) == 1, warnings
    folder = predict_run["folder"]
    total = f"skipped 3 of 5 entries of {folder} (listed under 'skipped' in {DETECTIONS_FILE})"
    assert sum(total in line for line in warnings) == 1, warnings
    assert len(warnings) == 4
    assert "predicted 2 images, skipped 3 files, 0 failed" in result.stdout


def test_predict_reads_an_exif_turned_photo_upright(predict_run: dict) -> None:
    """``turned.jpg`` is predicted as shown (upright), like ``upright.jpg``: its size, scores
    and boxes, and its pictures are drawn upright."""
    images = predict_run["written"]["images"]
    turned, upright = images["turned.jpg"], images["upright.jpg"]
    with Image.open(predict_run["folder"] / "upright.jpg") as opened:
        assert (turned["width"], turned["height"]) == opened.size == (125, 117)
    check_boxes(turned, threshold=0.01, max_boxes=10)
    assert turned["class_scores"] == pytest.approx(upright["class_scores"], abs=0.02)
    best, expected = turned["detections"][0], upright["detections"][0]
    assert best["class"] == expected["class"] and best["class"] in CLASSES
    assert best["box"] == pytest.approx(expected["box"], abs=4)
    factor = math.ceil(384 / min(turned["width"], turned["height"]))
    for picture in turned["pictures"]:
        with Image.open(predict_run["out"] / picture) as drawn:
            assert drawn.size == (factor * turned["width"], factor * turned["height"])


@pytest.mark.slow
def test_wsddn_predict_turns_proposals_with_the_photo(generated_root: Path, tmp_path: Path) -> None:
    """Selective search runs on the stored (sideways) pixels, as the cache keeps them; the
    proposals are turned with the photo, so WSDDN's boxes are turned proposals, upright."""
    ckpt = train_checkpoint(
        generated_root, tmp_path / "train", "experiment=wsddn_demo",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0",
    )  # fmt: skip
    folder = tmp_path / "photos"
    folder.mkdir()
    with Image.open(source_image(generated_root, "000003")) as opened:
        upright = opened.convert("RGB")
    path = save_turned(upright, folder / "turned.jpg")
    cache = tmp_path / "cache"
    overrides = [
        f"ckpt_path={ckpt}", f"input={folder}", f"paths.cache_dir={cache}", "score_threshold=0",
        "max_boxes=null", "proposals.workers=1", "proposals.progress=false",
    ]  # fmt: skip
    entry = predict(compose_cfg("predict", overrides, tmp_path / "out"))["images"]["turned.jpg"]
    assert (entry["width"], entry["height"]) == upright.size
    check_boxes(entry, threshold=0, max_boxes=10**6)
    (cached,) = cache.rglob(f"{hashlib.sha1(path.read_bytes()).hexdigest()}.npy")
    stored = np.load(cached)  # on the stored image: width upright.height, height upright.width
    turned = upright_boxes(stored, 6, upright.height, upright.width)
    for d in entry["detections"]:
        assert np.abs(turned - np.array(d["box"])).max(axis=1).min() < 0.01, d["box"]
