"""A training split whose object boxes are pseudo boxes: the second stage's data (issue 18).

:func:`with_pseudo_boxes` gives a copy of a split's :class:`~wsl.data.voc.SplitIndex` whose
annotations hold, instead of the XML's objects, the pseudo boxes a weak model's detections gave
each image (a COCO-format file, :mod:`wsl.data.coco_pseudo_labels`). The image-level labels stay
the annotations' (the weak supervision), as do the images, sizes and proposals. Every image of
the split must be in the file with the size its annotation gives: a file mined on another split
or another data set is refused, naming the file and the first image that does not fit.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path

from wsl.data.annotations import ImageObject
from wsl.data.bad_input import DataError
from wsl.data.coco_pseudo_labels import read_coco_pseudo_labels
from wsl.data.split_index import SplitIndex

log = logging.getLogger(__name__)


def with_pseudo_boxes(index: SplitIndex, path: str | Path) -> SplitIndex:
    """``index`` with each image's objects replaced by its pseudo boxes in the file ``path``
    (not difficult, not truncated); ``index`` itself is unchanged."""
    by_id = {image.image_id: image for image in read_coco_pseudo_labels(path, index.classes)}
    records = []
    for record in index.records:
        image = by_id.get(record.image_id)
        annotation = record.annotation
        if image is None:
            raise DataError(
                path,
                f"has no pseudo-labels for image {record.image_id!r} of split {index.split!r}: "
                "mine them on the split the detector trains on",
            )
        if (image.width, image.height) != (annotation.width, annotation.height):
            raise DataError(
                path,
                f"image {record.image_id!r} is {image.width}x{image.height} pixels there and "
                f"{annotation.width}x{annotation.height} in {index.data_dir}: the pseudo-labels "
                "were mined on another data set",
            )
        objects = tuple(
            ImageObject(index.classes[c], tuple(box.tolist()), difficult=False, truncated=False)
            for box, c in zip(image.labels.boxes, image.labels.classes, strict=True)
        )
        records.append(replace(record, annotation=replace(annotation, objects=objects)))
    extra = len(by_id) - len(records)
    if extra:
        log.info("%s: %d images are not in split %r and are not used", path, extra, index.split)
    pseudo = copy.copy(index)
    pseudo.records = records
    pseudo.pseudo_labels = Path(path)
    return pseudo
