"""A split of a data set in COCO's own layout: :class:`COCOIndex`.

``data.root`` holds ``annotations/instances_<split>.json`` and the images in ``<split>/``
(``data.train_split=train2017``, ``val2017``), as COCO distributes them (and as annotation
tools export them)::

    {"images": [{"id": 397133, "file_name": "000000397133.jpg", "width": 640, "height": 427}],
     "annotations": [{"id": 1, "image_id": 397133, "category_id": 44,
                      "bbox": [217.6, 240.5, 38.9, 57.5], "area": 1481.4, "iscrowd": 0}],
     "categories": [{"id": 44, "name": "bottle"}]}

- Image-level labels are the categories of an image's annotations; crowd annotations
  (``iscrowd: 1``) count for the label and are ignored in evaluation (``difficult``), as
  COCO's evaluation ignores them; an image without annotations is negative for every class.
- Category ids may be any integers (COCO's run 1-90 with gaps); the class order is the
  categories' order in the file, and :attr:`~wsl.data.split_index.SplitIndex.category_ids`
  keeps each class's id for COCO-format results. An image's id here is its COCO id as text.
- ``bbox`` is ``[x, y, w, h]`` in continuous coordinates: the box is the inclusive pixels
  ``x .. x + w - 1`` (:func:`~wsl.structures.boxes.inclusive_boxes`; a box under a pixel wide
  keeps one pixel). A box reaching at most :data:`BOX_TOLERANCE` pixels past the image (float
  rounding in exported files) is clipped to it; further out it is an error.
- A file without ``annotations`` (COCO's ``image_info_test*.json``) has no boxes.

Bad input names the file and the entry (``annotations[17] (id 9)``): an image, a category or an
annotation that is malformed, a category id used but not declared, a duplicate id, a box
outside the image, a missing image file. A problem of one image (its entry, its annotations,
its file) skips that image with ``data.on_error=skip`` (counted and logged); a problem of the
categories stops the run whatever ``data.on_error`` says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsl.data.annotations import ImageAnnotation, ImageObject
from wsl.data.bad_input import BadInputPolicy, DataError
from wsl.data.images import check_image, check_verify_choice
from wsl.data.labels import image_labels
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.split_index import ImageRecord, ProposalProvider, SplitIndex
from wsl.runtime.names import contained_path, name_problem
from wsl.runtime.settings import SettingError
from wsl.structures.boxes import inclusive_boxes

BOX_TOLERANCE = 1.0  # pixels a box may reach past the image before it is an error


def annotation_file(root: str | Path, split: str) -> Path:
    """``<root>/annotations/instances_<split>.json``, with a clear error when it is missing."""
    problem = name_problem(split)
    if problem is not None:
        raise SettingError(
            f"split name {split!r} is not a plain name ({problem}); with data=coco a split "
            "names annotations/instances_<split>.json and the image folder <split>/"
        )
    path = Path(root) / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("instances_*.json"))
        raise DataError(path, f"not found (data.root's annotations/ has {found or 'none'})")
    return path


def read_coco_file(path: Path) -> dict[str, Any]:
    """The JSON object of a COCO annotation file, its top level checked."""
    try:
        with path.open(encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(path, f"not a readable JSON file ({error})") from None
    if not isinstance(data, dict):
        raise DataError(path, "not a COCO annotation file: its top level is not an object")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"not a COCO annotation file: no {key!r} list")
    if "annotations" in data and not isinstance(data["annotations"], list):
        raise DataError(path, "'annotations' is not a list")
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_categories(path: Path, data: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Class names and category ids of a COCO file, in the file's order."""
    names, ids = [], []
    for position, entry in enumerate(data["categories"]):
        where = f"categories[{position}]"
        if not isinstance(entry, dict) or not _is_int(entry.get("id")):
            raise DataError(path, f"{where} has no integer 'id'")
        name = entry.get("name")
        problem = name_problem(name)
        if problem is not None:
            raise DataError(
                path,
                f"{where} (id {entry['id']}): name {name!r} is not a plain name ({problem}); "
                "class names become file names (comp4_det_<split>_<class>.txt): rename it",
            )
        if entry["id"] in ids:
            raise DataError(path, f"{where}: category id {entry['id']} is declared twice")
        if name in names:
            raise DataError(path, f"{where}: category name {name!r} is declared twice")
        names.append(name)
        ids.append(entry["id"])
    if not names:
        raise DataError(path, "declares no category")
    return tuple(names), tuple(ids)


class COCOLayout:
    """COCO's layout (``data/layout=coco``; a ``_target_``).

    Args:
        splits: split names mapped to the names of their files (``trainval: train2017``), so
            an experiment written for VOC's splits (``trainval``, ``val``, ``test``) runs on
            COCO data; a split not in it names its file itself.
    """

    def __init__(self, splits: Mapping[str, str] | None = None) -> None:
        self.splits = dict(splits or {})

    def split_name(self, split: str) -> str:
        """The name of the file of ``split``."""
        return self.splits.get(split, split)

    def index(self, root: str | Path, split: str, **settings: Any) -> COCOIndex:
        """The :class:`COCOIndex` of ``split``."""
        return COCOIndex(root, split, **settings)

    def classes(self, root: str | Path, split: str) -> tuple[tuple[str, ...], str]:
        """The categories of ``split``'s file, in its order."""
        path = annotation_file(root, split)
        return read_categories(path, read_coco_file(path))[0], f"the categories of {path}"


class COCOIndex(SplitIndex):
    """All usable images of one split of a data set in COCO's layout (see the module docstring).

    Args:
        root: folder holding ``annotations/`` and the image folders.
        split: the split's name (``train2017``): its file and its image folder.
        classes: class names in label order; ``None``: the file's categories in its order.
            Given, they must be the file's category names (in any order).
        difficult_labels, proposals, proposal_filter, on_error, verify_images: as
            :class:`~wsl.data.voc.VOCIndex` (crowd annotations are the difficult ones).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[str] | None = None,
        difficult_labels: str = "positive",
        proposals: ProposalProvider | None = None,
        proposal_filter: ProposalFilter | None = None,
        on_error: str = "raise",
        verify_images: str = "header",
    ) -> None:
        check_verify_choice(verify_images)
        path = annotation_file(root, split)
        self.ground_truth_file = path
        data = read_coco_file(path)
        names, ids = read_categories(path, data)
        if classes:
            if set(classes) != set(names):
                raise DataError(
                    path,
                    f"data.classes are not this file's categories: missing "
                    f"{[n for n in names if n not in classes] or 'none'}, not in the file "
                    f"{[c for c in classes if c not in names] or 'none'}",
                )
            category_of = dict(zip(names, ids, strict=True))
            names, ids = tuple(classes), tuple(category_of[name] for name in classes)
        policy = BadInputPolicy(on_error)
        image_dir = Path(root) / split
        records = _read_images(
            path, data, image_dir, names, ids, difficult_labels, verify_images, policy
        )
        super().__init__(
            path, split, names, policy, records, "annotations" in data, proposals,
            proposal_filter, category_ids=ids,
        )  # fmt: skip

    def coco_image_ids(self) -> dict[str, int]:
        """The file's own image ids."""
        return {record.image_id: int(record.image_id) for record in self.records}


def _image_entries(path: Path, data: dict[str, Any], policy: BadInputPolicy) -> dict[int, dict]:
    """The file's image entries by id (a malformed one reported, a duplicate id an error)."""
    images: dict[int, dict] = {}
    for position, entry in enumerate(data["images"]):
        where = f"images[{position}]"
        try:
            if not isinstance(entry, dict) or not _is_int(entry.get("id")):
                raise DataError(path, f"{where} has no integer 'id'")
            if entry["id"] in images:
                raise DataError(path, f"{where}: image id {entry['id']} is listed twice")
            width, height = entry.get("width"), entry.get("height")
            if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
                raise DataError(
                    path, f"{where} (id {entry['id']}): width and height must be positive "
                    f"integers, got {width!r} x {height!r}",
                )  # fmt: skip
            parts = str(entry.get("file_name", "")).split("/")
            problem = next((name_problem(p) for p in parts if name_problem(p)), None)
            if not isinstance(entry.get("file_name"), str) or problem:
                raise DataError(
                    path,
                    f"{where} (id {entry['id']}): file_name {entry.get('file_name')!r} is not a "
                    f"relative path of plain names ({problem or 'not text'})",
                )
        except DataError as error:
            policy.report(error)
            continue
        images[entry["id"]] = entry
    return images


def _read_images(
    path: Path,
    data: dict[str, Any],
    image_dir: Path,
    names: tuple[str, ...],
    ids: tuple[int, ...],
    difficult_labels: str,
    verify_images: str,
    policy: BadInputPolicy,
) -> list[ImageRecord]:
    images = _image_entries(path, data, policy)
    name_of = dict(zip(ids, names, strict=True))
    objects: dict[int, list[ImageObject]] = {image_id: [] for image_id in images}
    bad: dict[int, DataError] = {}
    seen_ids: dict[Any, int] = {}
    for position, entry in enumerate(data.get("annotations", [])):
        where = f"annotations[{position}]"
        image_id = entry.get("image_id") if isinstance(entry, dict) else None
        try:
            if not isinstance(entry, dict):
                raise DataError(path, f"{where} is not an object")
            if "id" in entry:
                if entry["id"] in seen_ids:
                    raise DataError(
                        path, f"{where}: annotation id {entry['id']!r} is also "
                        f"annotations[{seen_ids[entry['id']]}]'s",
                    )  # fmt: skip
                seen_ids[entry["id"]] = position
            where += f" (id {entry.get('id')!r}, image {image_id!r})"
            if image_id not in images:
                raise DataError(path, f"{where}: image {image_id!r} is not a usable image entry")
            if entry.get("category_id") not in name_of:
                raise DataError(
                    path, f"{where}: category id {entry.get('category_id')!r} is used but not "
                    "declared in 'categories'",
                )  # fmt: skip
            objects[image_id].append(_object(path, where, entry, images[image_id], name_of))
        except DataError as error:
            if image_id in images:
                bad.setdefault(image_id, error)
            else:
                policy.report(error)
    records = []
    for image_id, entry in images.items():
        try:
            if image_id in bad:
                raise bad[image_id]
            image_path = contained_path(image_dir, *entry["file_name"].split("/"))
            size = (entry["width"], entry["height"])
            check_image(image_path, verify_images, size)
        except DataError as error:
            policy.report(error)
            continue
        annotation = ImageAnnotation(
            str(image_id), entry["file_name"], *size, 3, False, tuple(objects[image_id])
        )
        labels, weights = image_labels(annotation, names, difficult_labels)
        records.append(ImageRecord(annotation, image_path, labels, weights))
    return records


def _object(
    path: Path, where: str, entry: dict, image: dict, name_of: dict[int, str]
) -> ImageObject:
    """One annotation as an object, its box checked against its image."""
    bbox = entry.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
        raise DataError(path, f"{where}: bbox {bbox!r} is not four finite numbers [x, y, w, h]")
    x, y, w, h = bbox
    width, height = image["width"], image["height"]
    if w < 0 or h < 0:
        raise DataError(path, f"{where}: bbox {bbox} has a negative width or height")
    tolerance = BOX_TOLERANCE
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        raise DataError(path, f"{where}: bbox {bbox} is outside the {width}x{height} image")
    x1, y1, x2, y2 = inclusive_boxes(np.array(bbox))[0].tolist()
    x1, y1 = min(max(x1, 0.0), width - 1.0), min(max(y1, 0.0), height - 1.0)
    x2, y2 = min(max(x2, x1), width - 1.0), min(max(y2, y1), height - 1.0)
    crowd = entry.get("iscrowd", 0)
    if crowd not in (0, 1) or isinstance(crowd, bool):
        raise DataError(path, f"{where}: iscrowd must be 0 or 1, got {crowd!r}")
    area = entry.get("area")
    if area is not None and not (_is_number(area) and area >= 0):
        raise DataError(path, f"{where}: area {area!r} is not a non-negative number")
    return ImageObject(
        name=name_of[entry["category_id"]],
        box=(x1, y1, x2, y2),
        difficult=crowd == 1,
        truncated=False,
        area=None if area is None else float(area),
    )
