"""OpenCV selective search on small synthetic JPEGs: boxes, caching, parallel runs, bad images."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image

from wsl.data import selective_search
from wsl.data.bad_input import DataError
from wsl.data.selective_search import SelectiveSearchProposals, rects_to_boxes

WIDTH, HEIGHT = 128, 96
RED = (30, 20, 89, 59)  # inclusive x1, y1, x2, y2
BLUE = (98, 64, 121, 89)


def write_jpeg(path: Path, background: int = 128, red: tuple = RED) -> Path:
    image = np.full((HEIGHT, WIDTH, 3), background, dtype=np.uint8)
    image[red[1] : red[3] + 1, red[0] : red[2] + 1] = (0, 0, 255)  # BGR
    image[BLUE[1] : BLUE[3] + 1, BLUE[0] : BLUE[2] + 1] = (255, 0, 0)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def best_iou(boxes: np.ndarray, box: tuple) -> float:
    """Highest IoU (inclusive pixel convention) of ``box`` with any of ``boxes``."""
    x1, y1, x2, y2 = box
    iw = np.clip(np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1) + 1, 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1) + 1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    inter = iw * ih
    return float((inter / (areas + (x2 - x1 + 1) * (y2 - y1 + 1) - inter)).max())


def assert_inside(boxes: np.ndarray) -> None:
    x1, y1, x2, y2 = boxes.T
    assert ((x1 >= 0) & (x1 <= x2) & (x2 <= WIDTH - 1)).all()
    assert ((y1 >= 0) & (y1 <= y2) & (y2 <= HEIGHT - 1)).all()


@pytest.fixture
def count_computed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The images computed (not read from the cache) in this process, in order."""
    computed: list[Path] = []
    compute = selective_search._compute_and_cache

    def counting(path: Path, *args: object, **kwargs: object) -> np.ndarray | None:
        computed.append(path)
        return compute(path, *args, **kwargs)

    monkeypatch.setattr(selective_search, "_compute_and_cache", counting)
    return computed


def test_rects_to_inclusive_boxes_of_the_original_image() -> None:
    rects = np.array([[30, 20, 60, 40], [0, 0, 128, 96]], dtype=np.int32)  # x, y, w, h
    np.testing.assert_array_equal(
        rects_to_boxes(rects, 1.0, 1.0, WIDTH, HEIGHT), [[30, 20, 89, 59], [0, 0, 127, 95]]
    )
    # Found on the image halved to 64x48: coordinates double, inclusive ends are x + w - 1.
    rects = np.array([[15, 10, 30, 20], [0, 0, 64, 48], [63, 47, 1, 1]], dtype=np.int32)
    boxes = rects_to_boxes(rects, 0.5, 0.5, WIDTH, HEIGHT)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, [[30, 20, 89, 59], [0, 0, 127, 95], [126, 94, 127, 95]])
    # A rect past the edge (rounding of an odd size) is clipped into the image.
    np.testing.assert_array_equal(
        rects_to_boxes(np.array([[0, 0, 65, 49]]), 0.5, 0.5, WIDTH, HEIGHT), [[0, 0, 127, 95]]
    )


@pytest.mark.parametrize("max_side", [None, 64])
def test_proposals_cover_drawn_rectangles(tmp_path: Path, max_side: int | None) -> None:
    path = write_jpeg(tmp_path / "a.jpg")
    search = SelectiveSearchProposals(workers=1, max_side=max_side, progress=False)
    (proposals,) = search.load_paths([path])
    assert proposals.scores is None and proposals.boxes.dtype == np.float32
    assert_inside(proposals.boxes)
    assert [0, 0, WIDTH - 1, HEIGHT - 1] in proposals.boxes.tolist()  # the top of the hierarchy
    assert best_iou(proposals.boxes, RED) > 0.7
    assert best_iou(proposals.boxes, BLUE) > 0.7


def test_cache_is_reused_and_invalidated(tmp_path: Path, count_computed: list[Path]) -> None:
    a, b = write_jpeg(tmp_path / "a.jpg"), write_jpeg(tmp_path / "b.jpg", background=200)
    cache = tmp_path / "cache"
    search = SelectiveSearchProposals(cache_dir=str(cache), workers=1, progress=False)
    first = search.load(["a", "b"], [a, b])
    assert count_computed == [a, b]
    files = sorted(search.cache_folder.iterdir())
    assert files == sorted(
        search.cache_folder / f"{hashlib.sha1(p.read_bytes()).hexdigest()}.npy" for p in (a, b)
    )  # one .npy per image, named by its content; no temporary file left
    mtimes = [f.stat().st_mtime_ns for f in files]

    again = SelectiveSearchProposals(cache_dir=str(cache), workers=1, progress=False)
    second = again.load(["a", "b"], [a, b])
    assert count_computed == [a, b]  # nothing computed again
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    for key in ("a", "b"):
        np.testing.assert_array_equal(second[key].boxes, first[key].boxes)

    write_jpeg(a, red=(10, 10, 60, 60))  # a changed image is computed again, b is not
    again.load_paths([a, b])
    assert count_computed == [a, b, a]

    for changed in ({"mode": "quality"}, {"max_side": 64}):  # a changed parameter recomputes
        count_computed.clear()
        other = SelectiveSearchProposals(cache_dir=str(cache), workers=1, progress=False, **changed)
        other.load_paths([b])
        assert count_computed == [b]
        assert other.cache_folder != search.cache_folder and other.cache_folder.parent == cache


def test_unreadable_cache_file_is_computed_again(tmp_path: Path, count_computed: list) -> None:
    path = write_jpeg(tmp_path / "a.jpg")
    search = SelectiveSearchProposals(cache_dir=str(tmp_path / "cache"), workers=1, progress=False)
    (expected,) = search.load_paths([path])
    (cache_file,) = search.cache_folder.iterdir()
    cache_file.write_bytes(b"\x93NUMPY truncated")
    (proposals,) = search.load_paths([path])
    assert len(count_computed) == 2
    np.testing.assert_array_equal(proposals.boxes, expected.boxes)
    np.testing.assert_array_equal(np.load(cache_file), expected.boxes)


def test_failed_cache_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jpeg(tmp_path / "a.jpg")
    search = SelectiveSearchProposals(cache_dir=str(tmp_path / "cache"), workers=1, progress=False)

    def interrupted_save(file: object, array: np.ndarray) -> None:
        file.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        search.load_paths([path])
    assert list(search.cache_folder.iterdir()) == []  # neither a partial .npy nor a temp file


def test_bad_images_are_data_errors(tmp_path: Path) -> None:
    search = SelectiveSearchProposals(workers=1, progress=False)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not really a JPEG")
    with pytest.raises(DataError, match=r"corrupt\.jpg: not a readable image"):
        search.load_paths([corrupt])
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jpg: not a readable image"):
        search.load_paths([tmp_path / "empty.jpg"])
    with pytest.raises(DataError, match=r"missing\.jpg: image file does not exist"):
        search.load_paths([tmp_path / "missing.jpg"])
    with pytest.raises(ValueError, match="2 image ids but 1 image paths"):
        search.load(["a", "b"], [corrupt])
    with pytest.raises(ValueError, match="mode='slow'"):
        SelectiveSearchProposals(mode="slow")


def test_parallel_workers_match_one_process(tmp_path: Path) -> None:
    paths = [
        write_jpeg(tmp_path / f"{i}.jpg", background=60 + 40 * i, red=(10 + i, 12, 70, 50 + i))
        for i in range(3)
    ]
    cache = tmp_path / "cache"
    parallel = SelectiveSearchProposals(cache_dir=str(cache), workers=2, progress=False)
    serial = SelectiveSearchProposals(workers=1, progress=False)
    # The same ranked boxes whichever process computed them and whatever it computed before.
    for got, expected in zip(parallel.load_paths(paths), serial.load_paths(paths), strict=True):
        np.testing.assert_array_equal(got.boxes, expected.boxes)
    assert len(list(parallel.cache_folder.iterdir())) == 3  # workers wrote the cache

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a JPEG")
    with pytest.raises(DataError, match=r"corrupt\.jpg: not a readable image"):
        SelectiveSearchProposals(workers=2, progress=False).load_paths([paths[0], corrupt])


def test_exif_orientation_is_ignored(tmp_path: Path) -> None:
    """Boxes are in the image as stored (like VOC's boxes and PIL), not as a viewer rotates it."""
    path = write_jpeg(tmp_path / "a.jpg")
    with Image.open(path) as image:
        exif = image.getexif()
        exif[ExifTags.Base.Orientation] = 6  # "rotate 90° to display"
        image.save(path, exif=exif)
    (proposals,) = SelectiveSearchProposals(workers=1, progress=False).load_paths([path])
    assert_inside(proposals.boxes)
    assert [0, 0, WIDTH - 1, HEIGHT - 1] in proposals.boxes.tolist()


# --- workers end with their parent ---------------------------------------------------------------

SEARCH_SCRIPT = """
import sys
from pathlib import Path
from wsl.data.selective_search import SelectiveSearchProposals
search = SelectiveSearchProposals(mode="quality", workers=2, max_side=None, progress=False)
search.load_paths([Path(p) for p in sys.argv[1:]])
"""


def live_children(pid: int) -> list[int]:
    """The PIDs of the living (not zombie) processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat_file.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:  # ended meanwhile
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(stat_file.parent.name))
    return found


def proc_file(pid: int, name: str) -> str:
    """``/proc/<pid>/<name>``; empty once the process has ended."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has used; 0 once it has ended."""
    stat = proc_file(pid, "stat")
    if not stat:
        return 0.0
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    stat = proc_file(pid, "stat")
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_workers_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the process running selective search on 2 workers ends its workers too,
    in the middle of an image (each would otherwise finish it, about 9 s here, then wait
    forever)."""
    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    paths = [tmp_path / f"{i}.jpg" for i in range(4)]
    for path in paths:
        cv2.imwrite(str(path), noise)
    parent = subprocess.Popen(
        [sys.executable, "-c", SEARCH_SCRIPT, *map(str, paths)],
        cwd=Path(__file__).resolve().parents[1], stderr=subprocess.PIPE,
    )  # fmt: skip
    workers: list[int] = []
    try:

        def searching() -> bool:  # two workers, each past its start (~0.5 s of CPU)
            workers[:] = [
                pid
                for pid in live_children(parent.pid)
                if "spawn_main" in proc_file(pid, "cmdline")
            ]
            return len(workers) == 2 and min(map(cpu_seconds, workers)) > 2.0

        assert wait_for(searching, timeout=30), parent.stderr.read() if parent.poll() else ""
        parent.kill()
        parent.wait()
        assert wait_for(lambda: not any(map(alive, workers)), timeout=5), workers
    finally:
        parent.kill()
        for pid in filter(alive, workers):
            os.kill(pid, signal.SIGKILL)
