"""Region proposals: read from ``.mat`` files, aligned to an image set by id, and filtered.

Two file formats are read, both 1-based with one cell per image:

- Fast R-CNN selective search (``voc_2007_trainval.mat``): cell ``boxes`` of ``Kx4``
  ``[y1 x1 y2 x2]`` arrays in image-set order, and optionally cell ``images`` with the ids.
- EdgeBoxes (as used by WSDDN): the same plus cell ``boxScores`` of ``K`` scores.

A proposal method is a class with ``load(image_ids, image_paths)`` and ``source(image_id,
image_path)`` (:class:`~wsl.data.voc.ProposalProvider`) and ``for_split(split)`` giving the
provider of a split; ``data.proposals._target_`` names it (``conf/data/proposals/``): files
with :class:`MatProposalFiles`, computed with
:class:`~wsl.data.selective_search.SelectiveSearchProposals`.

Inside the code proposals are :class:`Proposals`: ``float32`` ``x1, y1, x2, y2``, 0-based
inclusive pixel coordinates of the image as stored on disk.

A file is read once per process (:func:`load_proposal_mat`): train and val usually come from
the same trainval file. A file listed in a download manifest (:mod:`wsl.data.manifest`) is
first compared with it.

A problem of one image's entry is reported through ``data.on_error`` (raise, or skip that
image). A problem of the whole file stops the run whatever ``data.on_error`` says: a file
whose counts disagree, that lacks more than ``FILE_ERROR_SHARE`` of the split's images, or
where more than ``FILE_ERROR_SHARE`` of the images have a box outside the image (a wrong
``box_layout``, or a file without ids made for another image order). A correct file has
no box outside its image (``setup_voc07_eb.m`` in hbilen/WSDDN stops on the first one).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from wsl.data.bad_input import ON_ERROR_CHOICES, DataError
from wsl.data.manifest import check_file

BOX_LAYOUTS = ("yxyx", "xyxy")
_COLUMNS = {"yxyx": [1, 0, 3, 2], "xyxy": [0, 1, 2, 3]}  # file columns giving x1, y1, x2, y2
_SHOWN_IDS = 10  # how many ids an error message lists
FILE_ERROR_SHARE = 0.1  # a problem in more than this share of a split's images is the file's
_CACHED_FILES = 2  # .mat files kept read (trainval's and test's)
_cache: OrderedDict[tuple[str, int, int, str], ProposalMat] = OrderedDict()


@dataclass(frozen=True)
class Proposals:
    """The region proposals of one image."""

    boxes: np.ndarray  # (K, 4) float32 x1, y1, x2, y2, 0-based inclusive
    scores: np.ndarray | None = None  # (K,) float32, higher is better; None: file order is rank

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray | slice) -> Proposals:
        """The proposals at ``keep`` (indices, mask or slice), in that order."""
        return Proposals(self.boxes[keep], None if self.scores is None else self.scores[keep])


@dataclass(frozen=True)
class ProposalMat:
    """The contents of a proposals ``.mat`` file, one entry per image, in file order."""

    path: Path
    proposals: list[Proposals]
    image_ids: list[str] | None  # None: the file has no ``images``; its order is the image set's
    numeric_ids: bool = False  # ids were stored as numbers, so "000005" is matched as 5


def read_proposal_mat(path: str | Path, box_layout: str = "yxyx") -> ProposalMat:
    """Read a Fast R-CNN selective-search or EdgeBoxes ``.mat`` file.

    ``box_layout`` is the column order in the file (``yxyx`` for Fast R-CNN and WSDDN,
    ``xyxy`` otherwise); coordinates in the file are 1-based either way.
    """
    _check_layout(box_layout)
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "proposals file does not exist")
    try:
        content = scipy.io.loadmat(path, variable_names=["boxes", "boxScores", "images"])
    except NotImplementedError:
        raise DataError(
            path, "MATLAB v7.3 (HDF5) files are not supported; re-save it with save(..., '-v7')"
        ) from None
    except Exception as error:  # scipy raises many types for a damaged file
        raise DataError(path, f"not a readable .mat file ({error})") from None
    if "boxes" not in content:
        raise DataError(path, "has no 'boxes' variable (a cell array with one Kx4 array per image)")
    box_cells = _cells(path, content["boxes"], "boxes")
    score_cells = None
    if "boxScores" in content:
        score_cells = _cells(path, content["boxScores"], "boxScores")
    if score_cells is not None and len(score_cells) != len(box_cells):
        raise DataError(
            path, f"'boxScores' has {len(score_cells)} entries but 'boxes' has {len(box_cells)}"
        )
    proposals = [
        _entry(path, index, cell, None if score_cells is None else score_cells[index], box_layout)
        for index, cell in enumerate(box_cells)
    ]
    image_ids, numeric_ids = None, False
    if "images" in content:
        image_ids, numeric_ids = _image_ids(path, content["images"])
        if len(image_ids) != len(proposals):
            raise DataError(
                path, f"'images' has {len(image_ids)} ids but 'boxes' has {len(proposals)} entries"
            )
    return ProposalMat(path, proposals, image_ids, numeric_ids)


def load_proposal_mat(path: str | Path, box_layout: str = "yxyx") -> ProposalMat:
    """:func:`read_proposal_mat`, read once per process.

    Cached on the resolved path, modification time and size of the file (and the layout),
    so a file replaced on disk is read again. A file its folder's download manifest lists
    is checked against it (size and SHA-256) before it is read.
    """
    _check_layout(box_layout)
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "proposals file does not exist")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, box_layout)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    check_file(path)
    _cache[key] = read_proposal_mat(path, box_layout)
    while len(_cache) > _CACHED_FILES:
        _cache.popitem(last=False)
    return _cache[key]


def _check_layout(box_layout: str) -> None:
    if box_layout not in BOX_LAYOUTS:
        raise ValueError(f"box_layout={box_layout!r} is not valid; choose one of {BOX_LAYOUTS}")


def _cells(path: Path, value: np.ndarray, name: str) -> list[np.ndarray]:
    if value.dtype != object or sum(size > 1 for size in value.shape) > 1:
        raise DataError(
            path, f"'{name}' must be a 1xN or Nx1 cell array, not {value.dtype} {value.shape}"
        )
    return list(value.ravel())


def _entry(
    path: Path, index: int, boxes: np.ndarray, scores: np.ndarray | None, box_layout: str
) -> Proposals:
    boxes = np.asarray(boxes)
    if boxes.size == 0:
        boxes = np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.issubdtype(boxes.dtype, np.number):
        raise DataError(path, f"boxes entry {index + 1} is {boxes.dtype} {boxes.shape}, not Kx4")
    # Float before subtracting: the files often hold uint16, where 0 - 1 wraps around.
    xyxy = boxes[:, _COLUMNS[box_layout]].astype(np.float32) - 1
    if scores is None:
        return Proposals(xyxy)
    scores = np.asarray(scores, dtype=np.float32).ravel()
    if len(scores) != len(xyxy):
        raise DataError(
            path, f"entry {index + 1} has {len(xyxy)} boxes but {len(scores)} boxScores"
        )
    return Proposals(xyxy, scores)


def _image_ids(path: Path, value: np.ndarray) -> tuple[list[str], bool]:
    """Ids from a cell of strings, a char matrix, or numbers (and whether they were numbers)."""
    if value.dtype.kind == "U":  # char matrix: one id per row, padded with blanks
        return [str(v).strip() for v in value.ravel()], False
    if value.dtype != object:
        items = list(value.ravel())
    else:  # cell: each item is a char array or a 1x1 number
        items = [np.asarray(item).ravel() for item in value.ravel()]
        if all(item.dtype.kind == "U" for item in items):
            return ["".join(item.tolist()).strip() for item in items], False
        if not all(item.size == 1 and item.dtype.kind in "iuf" for item in items):
            raise DataError(path, "'images' must hold strings or numbers, one per entry")
        items = [item[0] for item in items]
    if not all(float(item).is_integer() for item in items):
        raise DataError(path, "'images' holds numbers that are not whole image ids")
    return [str(int(item)) for item in items], True


def align(mat: ProposalMat, image_ids: list[str], skip_missing: bool = False) -> ProposalLookup:
    """Map each id of the image set (in order) to its proposals in ``mat``.

    With ids in the file each requested id is looked up (the file may hold more images, e.g.
    trainval's file for the train split); without them the file must hold exactly one
    entry per image, in image-set order. Ids the file lacks raise a :class:`DataError`
    listing them, or with ``skip_missing`` become per-image errors in the returned lookup;
    lacking more than ``FILE_ERROR_SHARE`` of the images is an error either way.
    """
    if mat.image_ids is None:
        if len(mat.proposals) != len(image_ids):
            raise DataError(
                mat.path,
                f"has {len(mat.proposals)} entries and no 'images' ids, but the image set has "
                f"{len(image_ids)} images; use the file made for this split (or one with ids)",
            )
        return ProposalLookup(dict(zip(image_ids, mat.proposals, strict=True)))
    position = {key: i for i, key in enumerate(_keys(mat.image_ids, mat.numeric_ids))}
    if len(position) != len(mat.image_ids):
        raise DataError(mat.path, "'images' lists some image id more than once")
    keys = dict(zip(image_ids, _keys(image_ids, mat.numeric_ids), strict=True))
    missing = [image_id for image_id, key in keys.items() if key not in position]
    if missing:
        problem = (
            f"has no proposals for {len(missing)} of {len(image_ids)} images of the image set: "
            f"{_shown(missing)}"
        )
        if len(missing) > FILE_ERROR_SHARE * len(image_ids):
            raise DataError(
                mat.path,
                f"{problem}; more than {FILE_ERROR_SHARE:.0%} is a wrong file, whatever "
                "data.on_error says: use the file made for these images",
            )
        if not skip_missing:
            raise DataError(mat.path, f"{problem}; use the file made for this split")
    found = {
        image_id: mat.proposals[position[key]] for image_id, key in keys.items() if key in position
    }
    errors = {
        image_id: DataError(mat.path, f"has no proposals for image {image_id}")
        for image_id in missing
    }
    return ProposalLookup(found, errors)


def _shown(ids: list[str]) -> str:
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    return f"{ids[:_SHOWN_IDS]}{more}"


class ProposalLookup(Mapping[str, Proposals]):
    """Proposals by image id; looking up an image the file lacks raises its :class:`DataError`.

    So :class:`~wsl.data.voc.VOCIndex` reports a missing image through ``data.on_error``
    like any other per-image problem (skipped and counted, or raised).
    """

    def __init__(
        self, found: dict[str, Proposals], missing: dict[str, DataError] | None = None
    ) -> None:
        self.found = found
        self.missing = missing or {}

    def __getitem__(self, image_id: str) -> Proposals:
        if image_id in self.missing:
            raise self.missing[image_id]
        return self.found[image_id]

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.found

    def __iter__(self) -> Iterator[str]:
        return iter(self.found)

    def __len__(self) -> int:
        return len(self.found)


def _keys(image_ids: list[str], numeric: bool) -> list[str]:
    return [str(int(i)) if numeric and i.isdigit() else i for i in image_ids]


class MatProposals:
    """Proposals from a ``.mat`` file (a ``_target_`` for Hydra).

    Args:
        path: the Fast R-CNN selective-search or EdgeBoxes file.
        box_layout: column order in the file, ``yxyx`` (Fast R-CNN, WSDDN) or ``xyxy``.
        on_error: ``data.on_error``; with ``skip`` an image the file lacks is skipped
            (counted by the index), with ``raise`` it is an error.
    """

    def __init__(self, path: str, box_layout: str = "yxyx", on_error: str = "raise") -> None:
        _check_layout(box_layout)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(
                f"on_error={on_error!r} is not valid; choose one of {ON_ERROR_CHOICES}"
            )
        self.path = Path(path)
        self.box_layout = box_layout
        self.on_error = on_error

    def load(self, image_ids: list[str], image_paths: list[Path] | None = None) -> ProposalLookup:
        """Unfiltered proposals of each image id, after the whole-file checks.

        With ``image_paths`` the boxes are checked against the image sizes (read from the
        image headers): too many images with a box outside is the file's error.
        """
        mat = load_proposal_mat(self.path, self.box_layout)
        lookup = align(mat, image_ids, skip_missing=self.on_error == "skip")
        if image_paths is not None:
            self._check_fit(lookup, image_ids, image_paths)
        return lookup

    def _check_fit(
        self, lookup: ProposalLookup, image_ids: list[str], image_paths: list[Path]
    ) -> None:
        checked, outside = 0, []
        for image_id, image_path in zip(image_ids, image_paths, strict=True):
            size = _image_size(image_path) if image_id in lookup else None
            if size is None:
                continue  # reported per image (missing entry, unreadable image)
            checked += 1
            if not inside_image(lookup[image_id].boxes, *size).all():
                outside.append(image_id)
        if len(outside) > FILE_ERROR_SHARE * checked:
            raise DataError(
                self.path,
                f"{len(outside)} of {checked} images have proposals outside the image, e.g. "
                f"{_shown(outside)}; more than {FILE_ERROR_SHARE:.0%} means the whole file "
                f"does not fit these images (box_layout={self.box_layout!r} wrong, or a file "
                "without ids in another order), whatever data.on_error says",
            )

    def source(self, image_id: str, image_path: Path) -> str:
        """Where one image's proposals come from, for error messages."""
        return f"{self.path}[{image_id}]"


class MatProposalFiles:
    """One ``.mat`` proposal file per split (a ``_target_``: ``data/proposals=mat`` or
    ``edgeboxes``); :meth:`for_split` gives the :class:`MatProposals` of a split.

    Args:
        trainval_mat: the file of ``train``, ``val`` and ``trainval`` (Fast R-CNN and WSDDN
            each ship one file for trainval and one for test).
        test_mat: the file of ``test``.
        mat_files: the file of any other split, or another file for one of those four.
        box_layout, on_error: as :class:`MatProposals`.
    """

    def __init__(
        self,
        trainval_mat: str,
        test_mat: str,
        mat_files: Mapping[str, str] | None = None,
        box_layout: str = "yxyx",
        on_error: str = "raise",
    ) -> None:
        _check_layout(box_layout)
        trainval = dict.fromkeys(("train", "val", "trainval"), str(trainval_mat))
        self.files = {**trainval, "test": str(test_mat), **dict(mat_files or {})}
        self.box_layout = box_layout
        self.on_error = on_error

    def for_split(self, split: str) -> MatProposals:
        """The proposals of ``split``, from its file."""
        if split not in self.files:
            raise ValueError(
                f"no proposal file for split {split!r} (there are files for {sorted(self.files)}); "
                f"add +data.proposals.mat_files.{split}=PATH"
            )
        return MatProposals(self.files[split], box_layout=self.box_layout, on_error=self.on_error)


def _image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the image header, or None if it does not open."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # PIL raises many types; the index reports the image itself
        return None


def inside_image(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which 0-based inclusive ``x1, y1, x2, y2`` boxes are ordered and inside the image."""
    x1, y1, x2, y2 = boxes.T
    return (x1 >= 0) & (x1 <= x2) & (x2 < width) & (y1 >= 0) & (y1 <= y2) & (y2 < height)


@dataclass(frozen=True)
class ProposalFilter:
    """Checks proposals against their image and keeps the useful ones.

    Args:
        min_size: drop proposals narrower or shorter than this many pixels.
        remove_duplicates: drop exact repeats of a box, keeping the first.
        max_per_image: keep the top k (by score when there are scores, else file order);
            ``None`` keeps all.
        dedup_scale: also keep, of the proposals of a *training* image whose coordinates
            times this round to the same integers on the resized (and flipped) network input,
            only the first, as OICR's and PCL's code (``DEDUP_BOXES`` 1/8: boxes that fall on
            the same cells of the stride-8 map; ppengtang/oicr ``lib/fast_rcnn/config.py``
            line 89, pcl.pytorch 0.4.0 ``lib/core/config.py`` line 411). It depends on the
            drawn scale, so it runs after the train transform
            (:func:`~wsl.structures.boxes.unique_at_scale`); evaluation keeps every proposal
            (the authors score the deduplicated boxes and copy the scores back to all, which
            changes no refinement stream's per-region score). ``None``: off.
    """

    min_size: int = 20
    remove_duplicates: bool = True
    max_per_image: int | None = 2000
    dedup_scale: float | None = None

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ValueError(f"proposal_filter.min_size={self.min_size} must be >= 0")
        if self.dedup_scale is not None and not self.dedup_scale > 0:
            raise ValueError(
                f"proposal_filter.dedup_scale={self.dedup_scale} must be positive or null"
            )
        if self.max_per_image is not None and self.max_per_image < 1:
            raise ValueError(
                f"proposal_filter.max_per_image={self.max_per_image} must be >= 1 or null"
            )

    def apply(self, proposals: Proposals, width: int, height: int, source: str) -> Proposals:
        """Filtered proposals of a ``width`` x ``height`` image, best first when scored.

        ``source`` names where the proposals came from in error messages.
        """
        boxes, scores = proposals.boxes, proposals.scores
        if scores is not None and not np.isfinite(scores).all():
            bad = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise DataError(
                source,
                f"boxScores of proposal {bad} is {scores[bad]}, not a finite number; the "
                "scores rank the proposals and weight their features (use_proposal_scores)",
            )
        inside = inside_image(boxes, width, height)
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            raise DataError(
                source,
                f"proposal {bad} (x1, y1, x2, y2) = {boxes[bad].tolist()} (0-based) is not inside "
                f"the {width}x{height} image; check the box_layout and that the file was made "
                "for these images",
            )
        if len(proposals) == 0:
            raise DataError(source, "the image has no proposals at all")
        x1, y1, x2, y2 = boxes.T
        big = (x2 - x1 + 1 >= self.min_size) & (y2 - y1 + 1 >= self.min_size)
        if not big.any():
            raise DataError(
                source,
                f"all {len(proposals)} proposals are narrower or shorter than "
                f"min_size={self.min_size} pixels; lower proposal_filter.min_size",
            )
        proposals = proposals.select(big)
        if self.remove_duplicates:
            _, first = np.unique(proposals.boxes, axis=0, return_index=True)
            proposals = proposals.select(np.sort(first))
        if proposals.scores is not None:
            proposals = proposals.select(np.argsort(-proposals.scores, kind="stable"))
        return proposals.select(slice(self.max_per_image))
