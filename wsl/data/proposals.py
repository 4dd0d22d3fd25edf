"""Region proposals: read from ``.mat`` files, aligned to an image set by id, and filtered.

Two file formats are read, both 1-based with one cell per image:

- Fast R-CNN selective search (``voc_2007_trainval.mat``): cell ``boxes`` of ``Kx4``
  ``[y1 x1 y2 x2]`` arrays in image-set order, and optionally cell ``images`` with the ids.
- EdgeBoxes (as used by WSDDN): the same plus cell ``boxScores`` of ``K`` scores.

Inside the code proposals are :class:`Proposals`: ``float32`` ``x1, y1, x2, y2``, 0-based
inclusive pixel coordinates of the image as stored on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from wsl.data.bad_input import DataError

BOX_LAYOUTS = ("yxyx", "xyxy")
_COLUMNS = {"yxyx": [1, 0, 3, 2], "xyxy": [0, 1, 2, 3]}  # file columns giving x1, y1, x2, y2
_SHOWN_IDS = 5  # how many missing ids an error message lists


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


def align(mat: ProposalMat, image_ids: list[str]) -> dict[str, Proposals]:
    """Map each id of the image set (in order) to its proposals in ``mat``.

    With ids in the file each requested id is looked up (the file may hold more images, e.g.
    trainval's file for the train split); without them the file must hold exactly one
    entry per image, in image-set order.
    """
    if mat.image_ids is None:
        if len(mat.proposals) != len(image_ids):
            raise DataError(
                mat.path,
                f"has {len(mat.proposals)} entries and no 'images' ids, but the image set has "
                f"{len(image_ids)} images; use the file made for this split (or one with ids)",
            )
        return dict(zip(image_ids, mat.proposals, strict=True))
    position = {key: i for i, key in enumerate(_keys(mat.image_ids, mat.numeric_ids))}
    if len(position) != len(mat.image_ids):
        raise DataError(mat.path, "'images' lists some image id more than once")
    keys = dict(zip(image_ids, _keys(image_ids, mat.numeric_ids), strict=True))
    missing = [image_id for image_id, key in keys.items() if key not in position]
    if missing:
        raise DataError(
            mat.path,
            f"has no proposals for {len(missing)} of {len(image_ids)} images of the image set, "
            f"e.g. {missing[:_SHOWN_IDS]}; use the file made for this split",
        )
    return {image_id: mat.proposals[position[key]] for image_id, key in keys.items()}


def _keys(image_ids: list[str], numeric: bool) -> list[str]:
    return [str(int(i)) if numeric and i.isdigit() else i for i in image_ids]


class MatProposals:
    """Proposals from a ``.mat`` file (a ``_target_`` for Hydra).

    Args:
        path: the Fast R-CNN selective-search or EdgeBoxes file.
        box_layout: column order in the file, ``yxyx`` (Fast R-CNN, WSDDN) or ``xyxy``.
    """

    def __init__(self, path: str, box_layout: str = "yxyx") -> None:
        _check_layout(box_layout)
        self.path = Path(path)
        self.box_layout = box_layout

    def load(
        self, image_ids: list[str], image_paths: list[Path] | None = None
    ) -> dict[str, Proposals]:
        """Unfiltered proposals of each image id. ``image_paths`` is not needed here."""
        return align(read_proposal_mat(self.path, self.box_layout), image_ids)

    def source(self, image_id: str, image_path: Path) -> str:
        """Where one image's proposals come from, for error messages."""
        return f"{self.path}[{image_id}]"


@dataclass(frozen=True)
class ProposalFilter:
    """Checks proposals against their image and keeps the useful ones.

    Args:
        min_size: drop proposals narrower or shorter than this many pixels.
        remove_duplicates: drop exact repeats of a box, keeping the first.
        max_per_image: keep the top k (by score when there are scores, else file order);
            ``None`` keeps all.
    """

    min_size: int = 20
    remove_duplicates: bool = True
    max_per_image: int | None = 2000

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ValueError(f"proposal_filter.min_size={self.min_size} must be >= 0")
        if self.max_per_image is not None and self.max_per_image < 1:
            raise ValueError(
                f"proposal_filter.max_per_image={self.max_per_image} must be >= 1 or null"
            )

    def apply(self, proposals: Proposals, width: int, height: int, source: str) -> Proposals:
        """Filtered proposals of a ``width`` x ``height`` image, best first when scored.

        ``source`` names where the proposals came from in error messages.
        """
        boxes = proposals.boxes
        x1, y1, x2, y2 = boxes.T
        inside = (x1 >= 0) & (x1 <= x2) & (x2 < width) & (y1 >= 0) & (y1 <= y2) & (y2 < height)
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
