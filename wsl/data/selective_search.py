"""Region proposals for any images: OpenCV selective search, in parallel, cached on disk.

The cache holds one ``.npy`` per image under ``<cache_dir>/<parameters>/<image sha1>.npy``,
so a changed image or a changed parameter is computed again, and an unchanged one never
is. Files are written atomically; an unreadable cache file is computed again.

Worker processes end with the process that started them, even when it is killed (``kill -9``,
the OOM killer): see :func:`_init_worker`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from wsl.data.bad_input import DataError
from wsl.runtime.atomic import atomic_path
from wsl.structures.proposals import Proposals

log = logging.getLogger(__name__)

MODES = ("fast", "quality")
CACHE_VERSION = 1  # bump when what is computed for the same image and parameters changes
# As stored on disk: never rotated by EXIF orientation (VOC boxes and PIL agree).
_READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
# OpenCV ranks regions with libc's rand(); reseeding it before every image makes the order
# the same whichever worker computes it and whatever it computed before.
_LIBC = ctypes.CDLL(None)
PR_SET_PDEATHSIG = 1  # prctl(2) option, <linux/prctl.h>


def rects_to_boxes(
    rects: np.ndarray, scale_x: float, scale_y: float, width: int, height: int
) -> np.ndarray:
    """OpenCV ``x, y, w, h`` rects found on an image resized by ``scale_x``, ``scale_y`` to
    ``float32`` inclusive ``x1, y1, x2, y2`` boxes of the original ``width`` x ``height`` image.
    """
    x, y, w, h = rects.astype(np.float64).T
    boxes = np.stack([x / scale_x, y / scale_y, (x + w) / scale_x - 1, (y + h) / scale_y - 1], 1)
    return np.clip(np.round(boxes), 0, [width - 1, height - 1, width - 1, height - 1]).astype(
        np.float32
    )


def selective_search(image: np.ndarray, mode: str, max_side: int | None) -> np.ndarray:
    """Selective-search boxes of a BGR image, in OpenCV's ranked order.

    Images with a side longer than ``max_side`` are downscaled first (much faster); the
    boxes are scaled back to ``image``'s coordinates.
    """
    height, width = image.shape[:2]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image)
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    _LIBC.srand(1)
    rects = search.process()
    return rects_to_boxes(rects, image.shape[1] / width, image.shape[0] / height, width, height)


def _compute_and_cache(
    path: Path, cache_file: Path | None, mode: str, max_side: int | None
) -> np.ndarray | None:
    """Boxes of the image at ``path``, saved to ``cache_file``; ``None`` if it cannot be decoded.

    (``None`` rather than :class:`DataError`, which does not survive the trip between
    processes.)
    """
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, _READ_FLAGS) if data.size else None
    if image is None:
        return None
    boxes = selective_search(image, mode, max_side)
    if cache_file is not None:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as file:
            np.save(file, boxes)
    return boxes


def _init_worker(parent: int) -> None:
    """Set up a worker process of ``parent``: one OpenCV thread, and death with its parent.

    A killed parent tells its ``ProcessPoolExecutor`` workers nothing (each holds both ends of
    the task queue, so none sees it close): they would finish their image and wait forever,
    about 1 GB each. On Linux the kernel kills the worker when its parent dies (prctl(2)
    ``PR_SET_PDEATHSIG`` with ``SIGKILL``; strictly when the parent's thread that started it
    ends: the one waiting on the pool's results); elsewhere a daemon thread checks
    ``os.getppid()`` every second. A parent that died before this ran is caught here.
    """
    cv2.setNumThreads(1)  # one image per core; OpenCV's own threads would oversubscribe
    prctl = getattr(_LIBC, "prctl", None)  # Linux only
    if prctl is None or prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL)) != 0:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _exit_when_orphaned(parent: int) -> None:
    """End this process as soon as its parent is no longer ``parent`` (it died)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _read_cache(cache_file: Path) -> np.ndarray | None:
    if not cache_file.is_file():
        return None
    try:
        boxes = np.load(cache_file)
    except (OSError, ValueError, EOFError) as error:
        log.warning("recomputing unreadable cache file %s (%s)", cache_file, error)
        return None
    if boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        log.warning("recomputing cache file %s: holds %s %s", cache_file, boxes.dtype, boxes.shape)
        return None
    return boxes


class SelectiveSearchProposals:
    """Selective-search proposals computed with OpenCV (a ``_target_``:
    ``data/proposals=selective_search`` and ``wsl.predict``'s ``proposals``).

    Args:
        mode: ``fast`` or ``quality`` (OpenCV's two strategies; quality is ~5x slower).
        cache_dir: where computed proposals are kept; ``None`` computes every time.
        workers: processes to use; ``None`` uses every core.
        max_side: downscale images whose longer side exceeds this before searching;
            ``None`` searches at full size.
        progress: show a progress bar over the images being computed.
    """

    def __init__(
        self,
        mode: str = "fast",
        cache_dir: str | None = None,
        workers: int | None = None,
        max_side: int | None = 500,
        progress: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"selective_search.mode={mode!r} is not valid; choose one of {MODES}")
        if workers is not None and workers < 1:
            raise ValueError(f"selective_search.workers={workers} must be >= 1 or null")
        if max_side is not None and max_side < 1:
            raise ValueError(f"selective_search.max_side={max_side} must be >= 1 or null")
        self.mode = mode
        self.workers = workers or len(os.sched_getaffinity(0))
        self.max_side = max_side
        self.progress = progress
        self.cache_folder = (
            None
            if cache_dir is None
            else Path(cache_dir) / f"v{CACHE_VERSION}-{mode}-max_side_{max_side}"
        )

    def for_split(self, split: str) -> SelectiveSearchProposals:
        """The provider of any split: this one (the search needs only the images)."""
        return self

    def load(self, image_ids: list[str], image_paths: list[Path]) -> dict[str, Proposals]:
        """Proposals of each image id, computed from the image at the same position."""
        if len(image_ids) != len(image_paths):
            raise ValueError(f"{len(image_ids)} image ids but {len(image_paths)} image paths")
        return dict(zip(image_ids, self.load_paths(image_paths), strict=True))

    def source(self, image_id: str, image_path: Path) -> str:
        """Where one image's proposals come from, for error messages."""
        return f"selective search ({self.mode}) of {image_path}"

    def load_paths(self, image_paths: list[Path]) -> list[Proposals]:
        """Proposals of each image, from the cache or computed (scores ``None``: ranked order)."""
        paths = [Path(path) for path in image_paths]
        cache_files = [self._cache_file(path) for path in paths]
        boxes = [None if file is None else _read_cache(file) for file in cache_files]
        todo = [i for i, found in enumerate(boxes) if found is None]
        log.info(
            "selective search: %d of %d images cached%s, computing %d",
            len(boxes) - len(todo),
            len(boxes),
            "" if self.cache_folder is None else f" in {self.cache_folder}",
            len(todo),
        )
        computed = self._compute([paths[i] for i in todo], [cache_files[i] for i in todo])
        for i, found in zip(todo, computed, strict=True):
            boxes[i] = found
        return [Proposals(found) for found in boxes]

    def _cache_file(self, path: Path) -> Path | None:
        """Where the proposals of the image at ``path`` are cached (named by its content)."""
        if not path.is_file():
            raise DataError(path, "image file does not exist")
        if self.cache_folder is None:
            return None
        return self.cache_folder / f"{hashlib.sha1(path.read_bytes()).hexdigest()}.npy"

    def _compute(self, paths: list[Path], cache_files: list[Path | None]) -> list[np.ndarray]:
        work = partial(_compute_and_cache, mode=self.mode, max_side=self.max_side)
        workers = min(self.workers, len(paths))
        pool = None
        if workers > 1:
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),  # safe beside torch's threads
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
        results = (pool.map if pool else map)(work, paths, cache_files)
        found = []
        try:
            bar = tqdm(
                results,
                desc="selective search",
                total=len(paths),
                unit="image",
                disable=not self.progress,
            )
            for path, boxes in zip(paths, bar, strict=True):
                if boxes is None:
                    raise DataError(path, "not a readable image (OpenCV cannot decode it)")
                found.append(boxes)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return found
