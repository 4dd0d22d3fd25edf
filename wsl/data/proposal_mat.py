"""Proposal ``.mat`` files: read (once per process), and matched to an image set by id.

Two file formats are read, both 1-based with one cell per image:

- Fast R-CNN selective search (``voc_2007_trainval.mat``): cell ``boxes`` of ``Kx4``
  ``[y1 x1 y2 x2]`` arrays in image-set order, and optionally cell ``images`` with the ids.
- EdgeBoxes (as used by WSDDN): the same plus cell ``boxScores`` of ``K`` scores.

A file is read once per process (:func:`load_proposal_mat`): train and val usually come from
the same trainval file. A file listed in a download manifest (:mod:`wsl.data.manifest`) is
first compared with it. :func:`align` gives each image of a set its entry; a file that lacks
more than ``FILE_ERROR_SHARE`` of the set's images is the wrong file.
:func:`write_proposal_mat` writes the Fast R-CNN format (the generated data set's proposals).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from wsl.data.bad_input import DataError
from wsl.data.images import header_size
from wsl.data.manifest import check_file
from wsl.structures.proposals import Proposals, inside_image

BOX_LAYOUTS = ("yxyx", "xyxy")
_COLUMNS = {"yxyx": [1, 0, 3, 2], "xyxy": [0, 1, 2, 3]}  # file columns giving x1, y1, x2, y2
_SHOWN_IDS = 10  # how many ids an error message lists
FILE_ERROR_SHARE = 0.1  # a problem in more than this share of a split's images is the file's
_CACHED_FILES = 2  # .mat files kept read (trainval's and test's)
_cache: OrderedDict[tuple[str, int, int, str], ProposalMat] = OrderedDict()


@dataclass(frozen=True)
class ProposalMat:
    """The contents of a proposals ``.mat`` file, one entry per image, in file order."""

    path: Path
    proposals: list[Proposals]
    image_ids: list[str] | None  # None: the file has no ``images``; its order is the image set's
    numeric_ids: bool = False  # ids were stored as numbers, so "000005" is matched as 5


def check_layout(box_layout: str) -> None:
    """Raise :class:`ValueError` unless ``box_layout`` is one of :data:`BOX_LAYOUTS`."""
    if box_layout not in BOX_LAYOUTS:
        raise ValueError(f"box_layout={box_layout!r} is not valid; choose one of {BOX_LAYOUTS}")


def read_proposal_mat(path: str | Path, box_layout: str = "yxyx") -> ProposalMat:
    """Read a Fast R-CNN selective-search or EdgeBoxes ``.mat`` file.

    ``box_layout`` is the column order in the file (``yxyx`` for Fast R-CNN and WSDDN,
    ``xyxy`` otherwise); coordinates in the file are 1-based either way.
    """
    check_layout(box_layout)
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
    check_layout(box_layout)
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
    errors = missing_image_errors(mat.path, image_ids, missing, skip_missing)
    found = {
        image_id: mat.proposals[position[key]] for image_id, key in keys.items() if key in position
    }
    return ProposalLookup(found, errors)


def missing_image_errors(
    path: Path, image_ids: list[str], missing: list[str], skip_missing: bool
) -> dict[str, DataError]:
    """The per-image errors of the ``missing`` images of ``image_ids`` a proposal file
    ``path`` lacks; raises instead when more than :data:`FILE_ERROR_SHARE` are missing (the
    file's error), or when any is and not ``skip_missing``."""
    if missing:
        problem = (
            f"has no proposals for {len(missing)} of {len(image_ids)} images of the image set: "
            f"{shown_ids(missing)}"
        )
        if len(missing) > FILE_ERROR_SHARE * len(image_ids):
            raise DataError(
                path,
                f"{problem}; more than {FILE_ERROR_SHARE:.0%} is a wrong file, whatever "
                "data.on_error says: use the file made for these images",
            )
        if not skip_missing:
            raise DataError(path, f"{problem}; use the file made for this split")
    return {
        image_id: DataError(path, f"has no proposals for image {image_id}") for image_id in missing
    }


def check_fit(
    path: Path, lookup: ProposalLookup, image_ids: list[str], image_paths: list[Path], why: str
) -> None:
    """Raise when more than :data:`FILE_ERROR_SHARE` of the images ``lookup`` has (sizes from
    their headers) have a proposal outside the image: the file ``path``'s error; ``why`` says
    what that means (``the whole file does not fit these images (...)``)."""
    checked, outside = 0, []
    for image_id, image_path in zip(image_ids, image_paths, strict=True):
        size = header_size(image_path) if image_id in lookup else None
        if size is None:
            continue  # reported per image (missing or bad entry, unreadable image)
        checked += 1
        if not inside_image(lookup[image_id].boxes, *size).all():
            outside.append(image_id)
    if len(outside) > FILE_ERROR_SHARE * checked:
        raise DataError(
            path,
            f"{len(outside)} of {checked} images have proposals outside the image, e.g. "
            f"{shown_ids(outside)}; more than {FILE_ERROR_SHARE:.0%} means {why}, whatever "
            "data.on_error says",
        )


def shown_ids(ids: list[str]) -> str:
    """``ids`` for an error message: the first :data:`_SHOWN_IDS`, and how many more."""
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


def write_proposal_mat(
    path: Path, ids: Sequence[str], boxes: Mapping[str, np.ndarray], description: bytes
) -> None:
    """Write a Fast R-CNN proposal file: ``boxes`` (0-based inclusive ``x1, y1, x2, y2`` per
    image id) as a 1xN cell of ``[y1 x1 y2 x2]`` 1-based, and the ``images`` ids.

    scipy stamps the header with the time of writing; ``description`` (at most 116 bytes)
    replaces it, so the file depends on its contents only.
    """
    cells = np.empty((1, len(ids)), dtype=object)
    names = np.empty((len(ids), 1), dtype=object)
    for j, image_id in enumerate(ids):
        cells[0, j] = boxes[image_id][:, [1, 0, 3, 2]] + 1.0
        names[j, 0] = image_id
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"boxes": cells, "images": names})
    data = bytearray(buffer.getvalue())
    data[:116] = description.ljust(116, b" ")  # the MAT 5 header's text field
    path.write_bytes(bytes(data))
