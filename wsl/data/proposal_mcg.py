"""MCG proposals for COCO in the forms the field distributes them (``data/proposals=mcg``).

:class:`MCGProposalFiles` gives each split its :class:`MCGProposals`; each of a split's paths
is one of:

- A pickle as wetectron reads it (NVlabs/wetectron ``wetectron/data/datasets/coco.py`` lines
  89-93 and 107-111; ``docs/USE_YOUR_OWN_DATA.md`` lines 11-18): a dict with ``boxes``, a list
  of one ``Kx4`` array per image, ``indexes`` (or ``ids``, "compat fix", line 93) with the COCO
  image id (an integer) of each entry, and optionally ``scores``, one ``K`` (or ``Kx1``) array per
  image. The boxes are ``x1, y1, x2, y2`` 0-based inclusive pixel coordinates: wetectron makes
  them a ``BoxList`` in mode ``xyxy`` unchanged (``coco.py`` line 117), clips them to
  ``size - 1`` (``wetectron/structures/bounding_box.py`` lines 218-223) and measures a box as
  ``x2 - x1 + 1`` (lines 230-234). They are this project's coordinates, so taken as they are.
- A folder of the MCG site's per-image ``.mat`` files, ``MCG-COCO-val2014-boxes.tgz``
  extracted: ``MCG-COCO-val2014-boxes/COCO_val2014_000000193401.mat`` (rbgirshick/py-faster-rcnn
  ``lib/datasets/tools/mcg_munge.py`` line 16), matched by the number ending the name. Each
  holds ``boxes``, ``Kx4`` ``[y1 x1 y2 x2]`` 1-based ("Boxes from the MCG website are in (y1, x1,
  y2, x2) order", ``mcg_munge.py`` line 11; ``lib/datasets/coco.py`` lines 189-193 subtract 1
  and swap the columns), and ``scores``, ``Kx1``. So ``x1 = boxes[:, 1] - 1`` and so on.

``box_layout`` overrides the column order (``xyxy`` or ``yxyx``) of every path, not the
origin, which is the form's (0-based pickle, 1-based ``.mat``); ``None`` keeps the form's own.

The files come from strangers, and a pickle can name any Python function to call while it is
read. :func:`read_proposal_pickle` builds only what an array file needs (numpy arrays, dtypes
and scalars; lists, dicts, numbers and strings need no function) and refuses any other name
before calling anything.

Problems are reported as :mod:`wsl.data.proposals` describes: an image's entry (missing, not
``Kx4``, not finite, ``x2 < x1``, scores of another length) through ``data.on_error``; the
file's (not the expected structure, counts that disagree, repeated ids, more than
``FILE_ERROR_SHARE`` of the images missing, bad or outside their image) always.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from wsl.data.bad_input import ON_ERROR_CHOICES, DataError
from wsl.data.manifest import check_file
from wsl.data.proposal_mat import (
    FILE_ERROR_SHARE,
    ProposalLookup,
    check_fit,
    check_layout,
    missing_image_errors,
)
from wsl.structures.proposals import Proposals

# An image id or file name of a COCO image: "397133", "COCO_val2014_000000397133" -> 397133.
_COCO_NAME = re.compile(r"(?:COCO_[A-Za-z0-9]+_)?([0-9]+)")
_COLUMNS = {"yxyx": [1, 0, 3, 2], "xyxy": [0, 1, 2, 3]}  # file columns giving x1, y1, x2, y2
_CACHED = 2  # pickles or folder listings kept read (COCO 2017's train reads two pickles)
_cache: OrderedDict[tuple, _PickleSource | _FolderSource] = OrderedDict()

# What a pickle of numpy arrays names: module, name -> the numpy module's tail ("" for numpy).
# numpy 2 writes numpy._core, numpy 1 (and Python 2's pickles) numpy.core; either is read.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): "",
    ("numpy", "dtype"): "",
    **{
        (f"numpy.{core}.{module}", name): module
        for core in ("core", "_core")
        for module, name in (
            ("multiarray", "_reconstruct"),  # ndarray.__reduce__, protocols 0-4
            ("multiarray", "scalar"),  # numpy scalars, e.g. an np.int64 id
            ("numeric", "_frombuffer"),  # ndarray.__reduce_ex__(5)
        )
    },
}
_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "iso8859_1", "l1"}


class MCGProposals:
    """MCG proposals of one split from its pickles or folders (a provider for the index).

    Args:
        paths: the split's pickle or folder, or several (their images together, e.g. COCO
            2017's train: 2014's train and valminusminival); an image in two is an error.
        box_layout: column order of every path, ``xyxy`` or ``yxyx``; ``None``: the form's own
            (``xyxy`` 0-based pickles, ``yxyx`` 1-based ``.mat`` files).
        on_error: ``data.on_error``; with ``skip`` an image without a good entry is skipped
            (counted by the index), with ``raise`` it is an error.
    """

    def __init__(
        self, paths: str | Sequence[str], box_layout: str | None = None, on_error: str = "raise"
    ) -> None:
        if box_layout is not None:
            check_layout(box_layout)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(
                f"on_error={on_error!r} is not valid; choose one of {ON_ERROR_CHOICES}"
            )
        self.paths = [Path(p) for p in _path_list(paths)]
        if not self.paths:
            raise ValueError("MCGProposals needs at least one pickle or folder")
        self.box_layout = box_layout
        self.on_error = on_error
        self._names: dict[str, str] = {}

    def load(self, image_ids: list[str], image_paths: list[Path] | None = None) -> ProposalLookup:
        """The proposals of each image id (0-based ``x1, y1, x2, y2``), after the file checks.

        With ``image_paths`` the boxes are also checked against the image sizes (read from the
        image headers): too many images with a box outside is the file's error.
        """
        owners: dict[str, _PickleSource | _FolderSource] = {}
        for source in (_open(path) for path in self.paths):
            for key in source.ids():
                if key in owners:
                    raise DataError(
                        source.path,
                        f"has proposals for image {key}, and so has {owners[key].path}; a "
                        "split's files must hold different images",
                    )
                owners[key] = source
        keys = {image_id: _key(image_id) for image_id in image_ids}
        missing = [image_id for image_id, key in keys.items() if key not in owners]
        skip = self.on_error == "skip"
        errors = missing_image_errors(self._named(), image_ids, missing, skip)
        found: dict[str, Proposals] = {}
        bad = []
        for image_id, key in keys.items():
            if key not in owners:
                continue
            source = owners[key]
            self._names[image_id] = source.name(key)
            try:
                found[image_id] = source.proposals(key, self.box_layout)
            except DataError as error:
                errors[image_id] = error
                bad.append(error)
        if len(bad) > FILE_ERROR_SHARE * len(image_ids):
            raise DataError(
                bad[0].path,
                f"{len(bad)} of {len(image_ids)} images have an unusable entry, e.g. {bad[0]}; "
                f"more than {FILE_ERROR_SHARE:.0%} is the file's error, whatever data.on_error "
                "says",
            )
        if bad and self.on_error != "skip":
            raise bad[0]
        lookup = ProposalLookup(found, errors)
        if image_paths is not None:
            why = (
                f"the file does not fit these images (box_layout={self.box_layout!r} wrong, or "
                "a file made for other images)"
            )
            check_fit(self._named(), lookup, image_ids, image_paths, why)
        return lookup

    def source(self, image_id: str, image_path: Path) -> str:
        """Where one image's proposals come from, for error messages."""
        return self._names.get(image_id, f"{self._named()}[{image_id}]")

    def _named(self) -> Path:
        return self.paths[0] if len(self.paths) == 1 else Path(", ".join(map(str, self.paths)))


class MCGProposalFiles:
    """The MCG pickles or folders of each split (a ``_target_``: ``data/proposals=mcg``);
    :meth:`for_split` gives the :class:`MCGProposals` of a split.

    Args:
        files: split -> its pickle or folder, or a list of them (read together).
        box_layout, on_error: as :class:`MCGProposals`.
    """

    def __init__(
        self,
        files: Mapping[str, str | Sequence[str]],
        box_layout: str | None = None,
        on_error: str = "raise",
    ) -> None:
        if box_layout is not None:
            check_layout(box_layout)
        self.files = {str(split): _path_list(paths) for split, paths in dict(files).items()}
        self.box_layout = box_layout
        self.on_error = on_error

    def for_split(self, split: str) -> MCGProposals:
        """The proposals of ``split``, from its files."""
        if split not in self.files:
            raise ValueError(
                f"no MCG proposal file for split {split!r} (there are files for "
                f"{sorted(self.files)}); add +data.proposals.files.{split}=PATH"
            )
        return MCGProposals(self.files[split], box_layout=self.box_layout, on_error=self.on_error)


class _PickleSource:
    """A wetectron proposal pickle: the raw entries by COCO id (checked per image on use)."""

    default_layout, origin = "xyxy", 0.0

    def __init__(self, path: Path) -> None:
        self.path = path
        content = read_proposal_pickle(path)
        if not isinstance(content, dict):
            raise DataError(
                path,
                f"holds a {type(content).__name__}, not a dict with 'boxes' and 'indexes' "
                "(wetectron's proposal pickle)",
            )
        id_field = "indexes" if "indexes" in content else "ids"  # as wetectron's coco.py
        for name in ("boxes", id_field):
            if name not in content:
                raise DataError(
                    path,
                    f"has no {name!r} (a wetectron proposal pickle has 'boxes' and 'indexes' or "
                    f"'ids'); its keys are {sorted(map(str, content))[:10]}",
                )
        boxes = _listed(path, content["boxes"], "boxes")
        ids = _listed(path, content[id_field], id_field)
        scores = None
        if content.get("scores") is not None:
            scores = _listed(path, content["scores"], "scores")
        for name, values in ((id_field, ids), ("scores", scores)):
            if values is not None and len(values) != len(boxes):
                raise DataError(
                    path, f"{name!r} has {len(values)} entries but 'boxes' has {len(boxes)}"
                )
        self.entries: dict[str, tuple[Any, Any]] = {}
        for position, value in enumerate(ids):
            key = _file_id(value)
            if key is None:
                raise DataError(
                    path,
                    f"{id_field}[{position}] is {value!r}, not a COCO image id (a whole number)",
                )
            if key in self.entries:
                raise DataError(path, f"{id_field!r} lists image {key} more than once")
            self.entries[key] = (boxes[position], None if scores is None else scores[position])

    def ids(self) -> list[str]:
        return list(self.entries)

    def name(self, key: str) -> str:
        return f"{self.path}[{key}]"

    def proposals(self, key: str, box_layout: str | None) -> Proposals:
        boxes, scores = self.entries[key]
        return _converted(self.path, f"image {key}: ", boxes, scores, self, box_layout)


class _FolderSource:
    """A folder of the MCG site's per-image ``.mat`` files (each read on use)."""

    default_layout, origin = "yxyx", 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, Path] = {}
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                match = (
                    _COCO_NAME.fullmatch(entry.name[:-4]) if entry.name.endswith(".mat") else None
                )
                if match is None:
                    continue
                key = str(int(match.group(1)))
                if key in self.files:
                    raise DataError(
                        path, f"{entry.name} and {self.files[key].name} are both for image {key}"
                    )
                self.files[key] = Path(entry.path)
        if not self.files:
            raise DataError(
                path,
                "holds no per-image MCG files (COCO_<split>_<12-digit id>.mat, as "
                "MCG-COCO-<split>-boxes.tgz extracts to)",
            )

    def ids(self) -> list[str]:
        return list(self.files)

    def name(self, key: str) -> str:
        return str(self.files[key])

    def proposals(self, key: str, box_layout: str | None) -> Proposals:
        path = self.files[key]
        try:
            content = scipy.io.loadmat(path, variable_names=["boxes", "scores"])
        except NotImplementedError:
            raise DataError(path, "MATLAB v7.3 (HDF5) files are not supported") from None
        except Exception as error:  # scipy raises many types for a damaged file
            raise DataError(path, f"not a readable .mat file ({error})") from None
        if "boxes" not in content:
            raise DataError(path, "has no 'boxes' variable (a Kx4 array, [y1 x1 y2 x2] 1-based)")
        return _converted(path, "", content["boxes"], content.get("scores"), self, box_layout)


def read_proposal_pickle(path: str | Path) -> Any:
    """The contents of a proposal pickle, read as wetectron reads it (``encoding='latin1'``:
    Python 2's pickles) but refusing, with a :class:`DataError` naming the file and the name,
    any function or class besides those that rebuild numpy arrays, before anything is called.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "proposals file does not exist")
    try:
        with path.open("rb") as file:
            return _ArrayUnpickler(file, path).load()
    except DataError:
        raise
    except Exception as error:  # a damaged pickle raises almost any type
        raise DataError(path, f"not a readable pickle ({type(error).__name__}: {error})") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the names a pickle of numpy arrays needs (:data:`_NUMPY_GLOBALS`)."""

    def __init__(self, file: io.BufferedReader, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_global(_NUMPY_GLOBALS[module, name], name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol 0-2 pickles
            return _latin1_bytes
        raise DataError(
            self.path,
            f"is a pickle that asks to call {module}.{name}, which a file of numpy arrays never "
            "needs: refused without reading on (it may be made to run code); use the file as "
            "wetectron distributes it",
        )


def _numpy_global(module: str, name: str) -> Any:
    if not module:
        return getattr(np, name)
    for package in ("numpy._core", "numpy.core"):  # numpy 2, numpy 1
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {module}.{name}")


def _latin1_bytes(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes (``latin1``), and nothing else."""
    if not isinstance(text, str) or str(encoding).lower() not in _LATIN1:
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not bytes data")
    return text.encode("latin1", errors="strict")


def _open(path: Path) -> _PickleSource | _FolderSource:
    """The pickle or folder at ``path``, read once per process (until it changes on disk)."""
    if not path.exists():
        raise DataError(path, "proposals file (or folder of .mat files) does not exist")
    stat = path.stat()
    key = (str(path.resolve()), path.is_dir(), stat.st_mtime_ns, stat.st_size)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    if path.is_dir():
        source: _PickleSource | _FolderSource = _FolderSource(path)
    else:
        check_file(path)
        source = _PickleSource(path)
    _cache[key] = source
    while len(_cache) > _CACHED:
        _cache.popitem(last=False)
    return source


def _converted(
    path: Path,
    where: str,
    boxes: Any,
    scores: Any,
    form: _PickleSource | _FolderSource,
    box_layout: str | None,
) -> Proposals:
    """One entry as :class:`Proposals`, or a :class:`DataError` saying what is wrong with it."""
    boxes = np.asarray(boxes)
    if boxes.size == 0:
        boxes = np.zeros((0, 4), dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype.kind not in "iuf":
        raise DataError(path, f"{where}boxes are {boxes.dtype} {boxes.shape}, not Kx4 numbers")
    # Float before subtracting: the files often hold uint16, where 0 - 1 wraps around.
    columns = _COLUMNS[box_layout or form.default_layout]
    xyxy = boxes[:, columns].astype(np.float32) - np.float32(form.origin)
    finite = np.isfinite(xyxy).all(axis=1)
    ordered = finite & (xyxy[:, 0] <= xyxy[:, 2]) & (xyxy[:, 1] <= xyxy[:, 3])
    if not ordered.all():
        bad = int(np.flatnonzero(~ordered)[0])
        problem = "is not finite" if not finite[bad] else "has x2 < x1 or y2 < y1"
        raise DataError(
            path,
            f"{where}box {bad} (x1, y1, x2, y2) = {xyxy[bad].tolist()} (0-based) {problem}; "
            "check box_layout",
        )
    if scores is None:
        return Proposals(xyxy)
    scores = np.asarray(scores)
    if scores.dtype.kind not in "iuf":
        raise DataError(path, f"{where}scores are {scores.dtype}, not numbers")
    scores = scores.astype(np.float32).ravel()
    if len(scores) != len(xyxy):
        raise DataError(path, f"{where}{len(xyxy)} boxes but {len(scores)} scores")
    return Proposals(xyxy, scores)


def _listed(path: Path, value: Any, name: str) -> list[Any]:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return list(value)
    if not isinstance(value, list | tuple):
        raise DataError(
            path, f"{name!r} is a {type(value).__name__}, not a list with one entry per image"
        )
    return list(value)


def _file_id(value: Any) -> str | None:
    """An id in a pickle as a key: whole numbers (and their strings) as ``str(int)``."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, str) and re.fullmatch("[0-9]+", value):
        return str(int(value))
    return None


def _key(image_id: str) -> str:
    """An image id of the image set as a key: its COCO number (``397133`` or a COCO file
    name's), else the id itself."""
    match = _COCO_NAME.fullmatch(image_id)
    return str(int(match.group(1))) if match else image_id


def _path_list(paths: str | os.PathLike | Sequence[str]) -> list[str]:
    if isinstance(paths, str | os.PathLike):
        return [str(paths)]
    return [str(p) for p in paths]
