"""Pseudo-labels of a split as a COCO-format JSON file, so any detection library can train on
them, and read back, checked, as 0-based inclusive boxes.

The file: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``id``,
``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``area``, ``iscrowd`` 0 and the
pseudo box's ``score``) and ``categories`` (``id``, ``name``), as
https://cocodataset.org/#format-data describes and ``pycocotools.coco.COCO`` loads. Ids start at
1 (``COCOeval.evaluateImg`` records a detection's match as its ground truth's id, so a
ground-truth box of id 0 would leave its detection unmatched): image ``i`` of the split is id
``i + 1``, class ``c`` of the class list category ``c + 1``, annotations are numbered in file
order. ``file_name`` is ``<image id>.jpg``, the image's path under ``JPEGImages`` (the VOC
convention of :mod:`wsl.data.annotations`); VOC ids such as ``2008_000002`` are not numbers,
so the image's VOC id lives there, not in ``id``.

Geometry: COCO boxes are continuous pixel coordinates, ``x`` from the left edge of the image,
and a 0-based inclusive box ``x1 .. x2`` covers the pixels' span ``x1 .. x2 + 1``, so
``bbox = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` and ``area = w * h`` is the box's +1-convention
area (:func:`~wsl.structures.boxes.voc_area`). The VOC devkit's 1-based box of the same pixels
is ``x1 + 1, y1 + 1, x2 + 1, y2 + 1``: a devkit box ``xmin .. xmax`` is ``bbox = [xmin - 1,
ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``, as detectron2 reads VOC XML
(``detectron2/data/datasets/pascal_voc.py`` ``load_voc_instances``: ``xmin - 1`` and ``ymin - 1``,
``xmax`` and ``ymax`` kept, as continuous XYXY). pycocotools' ``loadRes`` computes a box's area
as ``w * h`` (``coco.py`` line 342) and its IoU on these continuous boxes equals
:func:`~wsl.structures.boxes.voc_iou` on the inclusive ones.

:func:`read_coco_pseudo_labels` treats the file as untrusted input: anything it cannot use is a
:class:`~wsl.data.bad_input.DataError` naming the file and the problem (not JSON, a missing or
non-numeric field, NaN or infinite values, duplicate ids or keys, a category not in the class
list, an annotation of an unknown image or category, a box of zero or negative size or outside
its image, a crowd box, a negative area). Nothing is clipped or skipped: a bad file is
refused whole, so no box silently becomes another.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from wsl.data.bad_input import DataError
from wsl.runtime.atomic import atomic_path
from wsl.runtime.names import name_problem
from wsl.structures.boxes import coco_bbox, inclusive_boxes
from wsl.structures.detections import ImageDetections

IMAGE_SUFFIX = ".jpg"
EDGE_TOLERANCE = 1e-6  # pixels a box's edge may pass the image's by (float rounding of x + w)


class PseudoLabelImage(NamedTuple):
    """One image's pseudo boxes: ``labels`` holds them 0-based inclusive, with their scores and
    class indices; the image is ``JPEGImages/<image_id>.jpg``, ``width`` x ``height`` pixels."""

    image_id: str
    width: int
    height: int
    labels: ImageDetections


def _box_problem(bbox: Sequence[float], width: int, height: int) -> str | None:
    """Why the COCO box ``[x, y, w, h]`` cannot be a pseudo box of a ``width`` x ``height``
    image, or ``None``."""
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"its size {w:g} x {h:g} is not positive"
    if (
        x < -EDGE_TOLERANCE
        or y < -EDGE_TOLERANCE
        or x + w > width + EDGE_TOLERANCE
        or y + h > height + EDGE_TOLERANCE
    ):
        return f"it reaches outside the {width}x{height} image"
    return None


def write_coco_pseudo_labels(
    path: str | Path, images: Sequence[PseudoLabelImage], class_names: Sequence[str]
) -> Path:
    """Write ``images``' pseudo boxes (in that order) as one COCO-format JSON file, atomically.

    Images without a box are listed too (a detector then knows them as pictures with nothing to
    find, or skips them). Scores keep full precision. Raises :class:`ValueError` naming the image
    for an id that is not a plain name or is repeated, a size that is not positive, a class
    outside ``class_names``, a non-finite score or coordinate, or a box of zero size or outside
    its image: a pseudo box that could not be read back is never written.
    """
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(class_names)]
    coco_images, annotations, seen = [], [], set()
    for number, image in enumerate(images, 1):
        where = f"pseudo-labels of image {image.image_id!r}"
        problem = name_problem(image.image_id)
        if problem is not None:
            raise ValueError(f"{where}: the id is not a plain name ({problem})")
        if image.image_id in seen:
            raise ValueError(f"{where}: the image is listed twice")
        seen.add(image.image_id)
        width, height = int(image.width), int(image.height)
        if width != image.width or height != image.height or width <= 0 or height <= 0:
            raise ValueError(f"{where}: image size {image.width}x{image.height} is not positive")
        coco_images.append(
            {
                "id": number,
                "file_name": image.image_id + IMAGE_SUFFIX,
                "width": width,
                "height": height,
            }
        )
        labels = ImageDetections.of(*image.labels)
        for bbox, score, c in zip(
            coco_bbox(labels.boxes).tolist(),
            labels.scores.tolist(),
            labels.classes.tolist(),
            strict=True,
        ):
            if not 0 <= c < len(class_names):
                raise ValueError(f"{where}: class {c} is not in the {len(class_names)} classes")
            if not all(math.isfinite(v) for v in [*bbox, score]):
                raise ValueError(f"{where}: a box or score is not finite ({bbox}, {score})")
            problem = _box_problem(bbox, width, height)
            if problem is not None:
                raise ValueError(f"{where}: box [x, y, w, h] = {bbox}: {problem}")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": c + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                    "score": score,
                }
            )
    document = {
        "info": {"description": "pseudo-labels written by wsl (wsl.data.coco_pseudo_labels)"},
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, allow_nan=False), encoding="utf-8")
    return path


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"a JSON object has the key(s) {repeated} more than once")
    return dict(pairs)


def _not_a_number(constant: str) -> float:
    raise ValueError(f"{constant} is not a number COCO files may hold")


class _Reader:
    """Checks one file's JSON, naming the file and the place of each problem."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, problem: str) -> DataError:
        return DataError(self.path, problem)

    def records(self, document: Any, key: str) -> list[dict[str, Any]]:
        if key not in document or not isinstance(document[key], list):
            raise self.error(f"{key!r} is missing or not a list: not a COCO-format file")
        for n, record in enumerate(document[key]):
            if not isinstance(record, dict):
                raise self.error(f"{key}[{n}] is not an object")
        return document[key]

    def field(self, record: dict[str, Any], key: str, where: str) -> Any:
        if key not in record:
            raise self.error(f"{where} has no {key!r}")
        return record[key]

    def integer(self, record: dict[str, Any], key: str, where: str) -> int:
        value = self.field(record, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{where}: {key} {value!r} is not a whole number")
        return value

    def number(self, value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{what} {value!r} is not a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.error(f"{what} {value!r} is not a finite number")
        return number

    def unique_id(self, key: str, n: int, record: dict[str, Any], seen: dict[int, int]) -> int:
        """``record``'s ``id``, the ``n``-th of ``key``, checked against the ids ``seen``."""
        value = self.integer(record, "id", f"{key}[{n}]")
        if value in seen:
            raise self.error(f"{key}[{n}]: duplicate id {value} (also {key}[{seen[value]}])")
        seen[value] = n
        return value


def read_coco_pseudo_labels(path: str | Path, class_names: Sequence[str]) -> list[PseudoLabelImage]:
    """The images of a COCO-format pseudo-label file, in file order, each with its boxes
    (0-based inclusive, in file order), scores and class indices in ``class_names``.

    Categories are matched to ``class_names`` by name (a file may list fewer classes, in any
    order). Every problem is a :class:`DataError` naming ``path`` (see the module docstring).
    """
    path = Path(path)
    check = _Reader(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise check.error("pseudo-label file does not exist") from None
    except UnicodeDecodeError as error:
        raise check.error(f"not UTF-8 text ({error})") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_not_a_number)
    except ValueError as error:  # json.JSONDecodeError too
        raise check.error(f"not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise check.error("the file is not a JSON object: not a COCO-format file")

    class_of, category_ids, category_names = {}, {}, {}
    for n, record in enumerate(check.records(document, "categories")):
        where = f"categories[{n}]"
        category = check.unique_id("categories", n, record, category_ids)
        name = check.field(record, "name", where)
        if not isinstance(name, str) or name not in class_names:
            raise check.error(
                f"{where}: unknown category {name!r}: not in the class list "
                f"({', '.join(class_names)})"
            )
        if name in category_names:
            raise check.error(
                f"{where}: duplicate category {name!r} (also categories[{category_names[name]}])"
            )
        category_names[name] = n
        class_of[category] = class_names.index(name)

    sizes, image_ids, file_names = {}, {}, {}
    for n, record in enumerate(check.records(document, "images")):
        where = f"images[{n}]"
        image = check.unique_id("images", n, record, image_ids)
        file_name = check.field(record, "file_name", where)
        if not isinstance(file_name, str) or not file_name.endswith(IMAGE_SUFFIX):
            stem, problem = None, f"it does not end with {IMAGE_SUFFIX}"
        else:
            stem = file_name[: -len(IMAGE_SUFFIX)]
            problem = name_problem(stem)
        if problem is not None:
            raise check.error(
                f"{where}: file_name {file_name!r} is not <image id>{IMAGE_SUFFIX} with a plain "
                f"image id ({problem}); the image is JPEGImages/<image id>{IMAGE_SUFFIX}"
            )
        if stem in file_names:
            raise check.error(
                f"{where}: duplicate file_name {file_name!r} (also images[{file_names[stem]}])"
            )
        file_names[stem] = n
        width, height = (
            check.integer(record, "width", where),
            check.integer(record, "height", where),
        )
        if width <= 0 or height <= 0:
            raise check.error(f"{where}: image size {width}x{height} is not positive")
        sizes[image] = (stem, width, height)

    found: dict[int, list[tuple[list[float], float, int]]] = {image: [] for image in sizes}
    annotation_ids: dict[int, int] = {}
    for n, record in enumerate(check.records(document, "annotations")):
        where = f"annotations[{n}]"
        check.unique_id("annotations", n, record, annotation_ids)
        image = check.integer(record, "image_id", where)
        if image not in sizes:
            raise check.error(f"{where}: image_id {image} is not the id of any image")
        category = check.integer(record, "category_id", where)
        if category not in class_of:
            raise check.error(f"{where}: category_id {category} is not the id of any category")
        bbox = check.field(record, "bbox", where)
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise check.error(f"{where}: bbox {bbox!r} is not a list [x, y, w, h]")
        bbox = [check.number(v, f"{where}: bbox {bbox!r} value") for v in bbox]
        score = check.number(check.field(record, "score", where), f"{where}: score")
        if record.get("iscrowd", 0) != 0:
            raise check.error(f"{where}: iscrowd {record['iscrowd']!r}: a pseudo box is one object")
        if "area" in record and check.number(record["area"], f"{where}: area") < 0:
            raise check.error(f"{where}: area {record['area']!r} is negative")
        stem, width, height = sizes[image]
        problem = _box_problem(bbox, width, height)
        if problem is not None:
            raise check.error(f"{where}: bbox [x, y, w, h] = {bbox} of image {stem!r}: {problem}")
        found[image].append((bbox, score, class_of[category]))

    images = []
    for image, (stem, width, height) in sizes.items():
        bboxes = [bbox for bbox, _, _ in found[image]]
        scores = [score for _, score, _ in found[image]]
        classes = [c for _, _, c in found[image]]
        labels = ImageDetections.of(inclusive_boxes(np.array(bboxes)), scores, classes)
        images.append(PseudoLabelImage(stem, width, height, labels))
    return images
