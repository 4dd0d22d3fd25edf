"""PASCAL VOC annotations: XML files, image sets and class lists.

Boxes are converted once, here, from VOC's 1-based XML coordinates to the internal
convention of ``shared/DESIGN.md``: float ``x1, y1, x2, y2``, 0-based inclusive pixels.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsl.data.bad_input import DataError
from wsl.runtime.names import name_problem
from wsl.runtime.settings import SettingError

log = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

SPLITS = ("train", "val", "trainval", "test")


@dataclass(frozen=True)
class ImageObject:
    """One annotated object; ``box`` is 0-based inclusive ``x1, y1, x2, y2``. ``difficult``
    objects are ignored in evaluation (VOC's difficult, COCO's crowd regions); ``area`` is
    COCO's (its size ranges), ``None`` for the box's."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool
    truncated: bool
    pose: str = "Unspecified"
    area: float | None = None


@dataclass(frozen=True)
class ImageAnnotation:
    """Everything the annotations say about one image (a VOC XML file, a COCO file's entry,
    a row of image tags: no objects)."""

    image_id: str
    filename: str
    width: int
    height: int
    depth: int
    segmented: bool
    objects: tuple[ImageObject, ...]

    def boxes(self) -> np.ndarray:
        """All object boxes as a float32 ``(N, 4)`` array."""
        return np.array([o.box for o in self.objects], dtype=np.float32).reshape(-1, 4)

    def class_indices(self, classes: Sequence[str]) -> np.ndarray:
        """Index of each object's class in ``classes`` (``(N,)`` int64)."""
        index = {name: i for i, name in enumerate(classes)}
        return np.array([index[o.name] for o in self.objects], dtype=np.int64)

    def difficult_mask(self) -> np.ndarray:
        """Which objects are marked difficult (``(N,)`` bool)."""
        return np.array([o.difficult for o in self.objects], dtype=bool)


def _text(node: ET.Element, tag: str, path: Path, default: str | None = None) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        if default is not None:
            return default
        raise DataError(path, f"missing <{tag}> in <{node.tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path, default: str | None = None) -> float:
    value = _text(node, tag, path, default)
    try:
        number = float(value)
    except ValueError:
        raise DataError(path, f"<{tag}> is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise DataError(path, f"<{tag}> is not a finite number: {value!r}")
    return number


def _int(node: ET.Element, tag: str, path: Path, default: str | None = None) -> int:
    number = _number(node, tag, path, default)
    if not number.is_integer():
        raise DataError(path, f"<{tag}> is not a whole number: {number:g}")
    return int(number)


def parse_voc_xml(path: str | Path, classes: Sequence[str]) -> ImageAnnotation:
    """Parse one VOC XML file, checking sizes, class names and box geometry.

    Raises :class:`DataError` naming ``path`` for a missing or unreadable file, a missing
    ``<size>``, a ``<filename>`` other than ``<id>.jpg`` (the image of id X is always
    ``JPEGImages/X.jpg``, as in the VOC devkit), a class not in ``classes``, a coordinate
    that is not a finite number and a box that is empty or outside the image. Box
    coordinates that are not whole numbers are kept as they are (boxes are float) and
    logged once per file.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(path, "annotation file does not exist") from None
    except ET.ParseError as error:
        raise DataError(path, f"not valid XML ({error})") from None
    image_id = path.stem
    filename = _text(root, "filename", path, f"{image_id}.jpg")
    if filename != f"{image_id}.jpg":
        raise DataError(
            path,
            f"<filename> is {filename!r} but this annotation is of id {image_id!r}, whose "
            f"image is JPEGImages/{image_id}.jpg: fix <filename> or remove it",
        )
    size = root.find("size")
    if size is None:
        raise DataError(path, "missing <size> (width, height, depth of the image)")
    width, height = _int(size, "width", path), _int(size, "height", path)
    if width <= 0 or height <= 0:
        raise DataError(path, f"image size {width}x{height} is not positive")
    objects = []
    fractional = []
    for node in root.findall("object"):
        name = _text(node, "name", path)
        if name not in classes:
            raise DataError(path, f"class {name!r} is not in the class list ({', '.join(classes)})")
        bndbox = node.find("bndbox")
        if bndbox is None:
            raise DataError(path, f"object {name!r} has no <bndbox>")
        corners = {t: _number(bndbox, t, path) for t in ("xmin", "ymin", "xmax", "ymax")}
        fractional += [f"{t}={c:g}" for t, c in corners.items() if not c.is_integer()]
        x1, y1, x2, y2 = (c - 1 for c in corners.values())
        if not (0 <= x1 <= x2 <= width - 1 and 0 <= y1 <= y2 <= height - 1):
            raise DataError(
                path,
                f"box of {name!r} (1-based xmin={x1 + 1:g} ymin={y1 + 1:g} xmax={x2 + 1:g} "
                f"ymax={y2 + 1:g}) is empty or outside the {width}x{height} image",
            )
        objects.append(
            ImageObject(
                name=name,
                box=(x1, y1, x2, y2),
                difficult=_int(node, "difficult", path, "0") == 1,
                truncated=_int(node, "truncated", path, "0") == 1,
                pose=_text(node, "pose", path, "Unspecified"),
            )
        )
    if fractional:
        log.warning(
            "%s: box coordinates that are not whole pixels (%s); kept as they are",
            path,
            ", ".join(fractional),
        )
    return ImageAnnotation(
        image_id=image_id,
        filename=filename,
        width=width,
        height=height,
        depth=_int(size, "depth", path, "3"),
        segmented=_int(root, "segmented", path, "0") == 1,
        objects=tuple(objects),
    )


def _text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (a byte-order mark dropped), split at ``\\n`` only, so line
    numbers are an editor's and other control characters stay in the line to be named."""
    try:
        return path.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error})") from None


def read_image_set(voc_dir: str | Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt``, in file order.

    A byte-order mark is dropped; an id that is not a plain name (see
    :func:`~wsl.runtime.names.name_problem`: it becomes ``Annotations/<id>.xml``, so ``../x``
    would read outside the data set), or listed twice, is a :class:`DataError` naming the file,
    the line and the id. ``split`` must be a plain name too
    (:class:`~wsl.runtime.settings.SettingError`).
    """
    main_dir = Path(voc_dir) / "ImageSets" / "Main"
    problem = name_problem(split)
    if problem is not None:
        raise SettingError(
            f"image set name {split!r} is not a plain name ({problem}); data.train_split, "
            f"data.val_split and data.test_split name a file <split>.txt of {main_dir}"
        )
    path = main_dir / f"{split}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem)
        raise DataError(path, f"image set {split!r} not found (available: {available})")
    ids, first_line, duplicates = [], {}, []
    for number, line in enumerate(_text_lines(path), 1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        problem = name_problem(image_id)
        if problem is not None:
            raise DataError(
                path,
                f"line {number}: id {image_id!r} is not a plain name ({problem}); an id names "
                f"Annotations/<id>.xml and JPEGImages/<id>.jpg: fix the line",
            )
        if image_id in first_line:
            duplicates.append(f"{image_id} (lines {first_line[image_id]} and {number})")
        first_line.setdefault(image_id, number)
        ids.append(image_id)
    if duplicates:
        raise DataError(path, f"ids listed more than once: {', '.join(duplicates)}")
    if not ids:
        raise DataError(path, "image set is empty")
    return ids


CLASSIFICATION_FLAGS = {"1": 1, "-1": -1, "0": 0}


def read_classification_set(
    voc_dir: str | Path, split: str, classes: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Image ids and their class flags from the classification layout: ``ImageSets/Main/
    <class>_<split>.txt``, one per class, each line ``<id> <flag>`` with flag ``1`` (present),
    ``-1`` (absent) or ``0`` (only difficult instances), as the VOC devkit's ``VOCevalcls.m``
    reads them.

    The ids are those of ``<split>.txt`` when it exists, else of the first class's file, in
    file order; flags are an int8 ``(N, C)`` array. A missing class file, a line that is not
    ``<id> <flag>``, an unknown flag, an id listed twice, an id the split lacks or an id of the
    split a class file lacks is a :class:`DataError` naming the file and the line.
    """
    main_dir = Path(voc_dir) / "ImageSets" / "Main"
    ids = read_image_set(voc_dir, split) if (main_dir / f"{split}.txt").is_file() else None
    columns = []
    for name in classes:
        path = main_dir / f"{name}_{split}.txt"
        if not path.is_file():
            raise DataError(
                path,
                f"not found: the labels of class {name!r} on split {split!r} (classification "
                "layout, one file per class; data.layout_options.labels_from=xml reads the "
                "XML files instead)",
            )
        column: dict[str, int] = {}
        for number, line in enumerate(_text_lines(path), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or fields[1] not in CLASSIFICATION_FLAGS:
                raise DataError(
                    path, f"line {number}: {line.strip()!r} is not '<image id> <1, -1 or 0>'"
                )
            image_id, flag = fields
            if image_id in column:
                raise DataError(path, f"line {number}: id {image_id!r} is listed twice")
            if ids is not None and image_id not in ids:
                raise DataError(
                    path, f"line {number}: id {image_id!r} is not in {main_dir / split}.txt"
                )
            column[image_id] = CLASSIFICATION_FLAGS[flag]
        if ids is None:
            ids = read_image_set(voc_dir, f"{name}_{split}")
        missing = [i for i in ids if i not in column]
        if missing:
            raise DataError(
                path, f"lacks {len(missing)} image(s) of split {split!r}, e.g. {missing[0]!r}"
            )
        columns.append(column)
    assert ids is not None  # a data set has at least one class
    flags = np.array([[column[i] for column in columns] for i in ids], dtype=np.int8)
    return ids, flags.reshape(len(ids), len(classes))


def read_class_list(voc_dir: str | Path) -> tuple[str, ...]:
    """Classes of a data set: ``classes.txt`` beside ``ImageSets`` if present, else VOC's 20.

    One class per line, surrounding whitespace stripped, blank lines skipped. A name that is
    not plain (see :func:`~wsl.runtime.names.name_problem`; class names become file names such
    as ``comp4_det_<split>_<class>.txt``) is a :class:`DataError` naming the file and the line.
    """
    path = Path(voc_dir) / "classes.txt"
    if not path.is_file():
        return VOC_CLASSES
    classes = []
    for number, line in enumerate(_text_lines(path), 1):
        name = line.strip()
        if not name:
            continue
        problem = name_problem(name)
        if problem is not None:
            raise DataError(
                path,
                f"line {number}: class name {name!r} is not a plain name ({problem}); class "
                f"names become file names (comp4_det_<split>_<class>.txt): rename the class",
            )
        classes.append(name)
    if not classes or len(set(classes)) != len(classes):
        raise DataError(path, "class list is empty or has duplicate names")
    return tuple(classes)
