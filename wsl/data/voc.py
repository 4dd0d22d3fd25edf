"""A split of a PASCAL VOC devkit folder (``VOCdevkit/VOC2007``, ``VOC2012``): :class:`VOCIndex`.

Image-level labels come from one of the devkit's two layouts (``data.layout_options.labels_from``):

- ``xml``: the objects of ``Annotations/<id>.xml`` (the detection layout); their boxes are
  the ground truth of the box metrics;
- ``image_sets``: the classification layout, ``ImageSets/Main/<class>_<split>.txt`` with
  ``1`` (present), ``-1`` (absent) or ``0`` (only difficult instances) per image, as the VOC
  devkit's ``VOCevalcls.m`` reads them. The XML files are optional then: where
  ``Annotations/`` exists its boxes are used for evaluation, else the split has no boxes
  (training, classification metrics and pictures work; box metrics say they need boxes);
- ``auto`` (default): ``xml`` where ``Annotations/`` exists, else ``image_sets``.

A split is an image set of ``data.devkit`` (``trainval``), an image set of another devkit
folder beside it (``VOC2012/trainval``), or several joined by ``+``
(``VOC2007/trainval+VOC2012/trainval``: VOC 07+12). VOC 2012's test set has no public
annotations: it has no boxes here, and its results files are written in the evaluation
server's layout (:func:`~wsl.evaluation.voc_detection.write_devkit_results`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsl.data.annotations import (
    ImageAnnotation,
    parse_voc_xml,
    read_class_list,
    read_classification_set,
    read_image_set,
)
from wsl.data.bad_input import BadInputPolicy, DataError
from wsl.data.images import check_image, check_verify_choice
from wsl.data.labels import flag_labels, image_labels
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.split_index import ImageRecord, ProposalProvider, SplitIndex
from wsl.runtime.names import contained_path, name_problem
from wsl.runtime.settings import SettingError

log = logging.getLogger(__name__)

_DEVKIT_FOLDER = re.compile(r"VOC\d{4}")
VOC_LABEL_SOURCES = ("auto", "xml", "image_sets")
# Devkit image sets without public annotations (the evaluation server scores them).
UNANNOTATED_SETS = (("VOC2012", "test"),)


def devkit_dir(root: str | Path, devkit: str = "VOC2007") -> Path:
    """``<root>/VOCdevkit/<devkit>``, with a clear error if ``root`` has another layout."""
    problem = name_problem(devkit)
    if problem is not None:
        raise SettingError(f"data.devkit={devkit!r} is not a folder name ({problem})")
    voc_dir = Path(root) / "VOCdevkit" / devkit
    if not voc_dir.is_dir():
        raise DataError(
            voc_dir,
            f"not found: data.root must hold VOCdevkit/{devkit} (run `make data` for the "
            "generated set or `python -m wsl.data.download voc2007|voc2012 --root ROOT` for VOC)",
        )
    return voc_dir


def split_parts(split: str, devkit: str = "VOC2007") -> list[tuple[str, str]]:
    """The ``(devkit, image set)`` parts of a split name (see the module docstring)."""
    parts = []
    for part in split.split("+"):
        folder, _, image_set = part.rpartition("/")
        if folder and not _DEVKIT_FOLDER.fullmatch(folder):
            raise SettingError(
                f"split {split!r}: {folder!r} is not a VOCdevkit folder such as VOC2012; a "
                "split is <set>, VOC<year>/<set>, or several joined by +"
            )
        parts.append((folder or devkit, image_set))
    return parts


class VOCLayout:
    """The VOC devkit layout (``data/layout=voc``; a ``_target_``).

    Args:
        devkit: the folder of ``VOCdevkit`` a plain image set name is read from (``VOC2007``,
            ``VOC2012``).
        labels_from: ``auto``, ``xml`` or ``image_sets`` (see the module docstring).
    """

    def __init__(self, devkit: str = "VOC2007", labels_from: str = "auto") -> None:
        self.devkit = devkit
        self.labels_from = labels_from

    def split_name(self, split: str) -> str:
        """``split`` itself: VOC's splits name their image sets."""
        return split

    def index(self, root: str | Path, split: str, **settings: Any) -> VOCIndex:
        """The :class:`VOCIndex` of ``split``."""
        return VOCIndex(root, split, devkit=self.devkit, labels_from=self.labels_from, **settings)

    def classes(self, root: str | Path, split: str) -> tuple[tuple[str, ...], str]:
        """``classes.txt`` of the devkit folder, else VOC's 20, and which it was."""
        voc_dir = devkit_dir(root, self.devkit)
        where = voc_dir / "classes.txt"
        source = str(where) if where.is_file() else f"VOC's 20 classes (no {where})"
        return read_class_list(voc_dir), source


class VOCIndex(SplitIndex):
    """All usable images of one split of a VOC devkit folder.

    Args:
        root: folder that holds ``VOCdevkit``.
        split: an image set (``trainval``, ``test``, any ``ImageSets/Main/<split>.txt``),
            ``<devkit>/<set>``, or several joined by ``+`` (see the module docstring).
        classes: class names in label order; ``None`` reads ``classes.txt`` or uses VOC's 20.
        difficult_labels: ``positive``, ``ignore`` or ``negative`` (see :mod:`wsl.data.labels`).
        proposals: where proposals come from, or ``None`` for image-level data only.
        proposal_filter: min size, duplicates and top-k applied to every image's proposals.
        on_error: ``raise`` a :class:`DataError`, or ``skip`` the image (logged, counted).
        verify_images: ``header``, ``full`` or ``none`` (see :func:`~wsl.data.images.check_image`).
        devkit: the folder of ``VOCdevkit`` a plain image set name is read from.
        labels_from: ``auto``, ``xml`` or ``image_sets`` (see the module docstring).
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
        devkit: str = "VOC2007",
        labels_from: str = "auto",
    ) -> None:
        check_verify_choice(verify_images)
        if labels_from not in VOC_LABEL_SOURCES:
            raise ValueError(
                f"data.layout_options.labels_from={labels_from!r} is not valid; choose one of "
                f"{VOC_LABEL_SOURCES}"
            )
        parts = split_parts(split, devkit)
        self.voc_dir = devkit_dir(root, parts[0][0])
        classes = tuple(classes) if classes else read_class_list(devkit_dir(root, devkit))
        policy = BadInputPolicy(on_error)
        records: list[ImageRecord] = []
        has_boxes = []
        first_part: dict[str, str] = {}
        for folder, image_set in parts:
            part_dir = devkit_dir(root, folder)
            part_records, part_boxes = _read_part(
                part_dir, image_set, classes, difficult_labels, labels_from, verify_images, policy
            )
            for record in part_records:
                if record.image_id in first_part:
                    raise DataError(
                        part_dir,
                        f"image id {record.image_id!r} of {folder}/{image_set} is also in "
                        f"{first_part[record.image_id]}: a joined split needs distinct ids",
                    )
                first_part[record.image_id] = f"{folder}/{image_set}"
            records += part_records
            has_boxes.append(part_boxes)
        if len(set(has_boxes)) > 1:
            raise DataError(
                self.voc_dir, f"split {split!r} joins image sets with and without boxes"
            )
        super().__init__(
            self.voc_dir, split, classes, policy, records, has_boxes[0], proposals, proposal_filter
        )
        if len(parts) == 1:
            self.devkit_results = ("", parts[0][1])
            if parts[0] in UNANNOTATED_SETS:
                log.warning(
                    "%s/%s has no public annotations: no box metrics; its results files go to "
                    "results/%s/Main/ in the run directory, in the evaluation server's layout",
                    *parts[0], parts[0][0],
                )  # fmt: skip
                self.devkit_results = (f"results/{parts[0][0]}/Main", parts[0][1])


def _read_part(
    voc_dir: Path,
    image_set: str,
    classes: Sequence[str],
    difficult_labels: str,
    labels_from: str,
    verify_images: str,
    policy: BadInputPolicy,
) -> tuple[list[ImageRecord], bool]:
    """The records of one image set of one devkit folder, and whether they have boxes."""
    has_xml = (voc_dir / "Annotations").is_dir()
    if labels_from == "auto":
        labels_from = "xml" if has_xml else "image_sets"
    if labels_from == "xml" and not has_xml:
        raise DataError(
            voc_dir / "Annotations",
            "not found: labels_from=xml reads the labels from the XML files; labels_from="
            "image_sets (data.layout_options) reads ImageSets/Main/<class>_<split>.txt",
        )
    has_boxes = has_xml and (voc_dir.name, image_set) not in UNANNOTATED_SETS
    flags = None
    if labels_from == "image_sets":
        ids, flags = read_classification_set(voc_dir, image_set, classes)
    else:
        ids = read_image_set(voc_dir, image_set)
    records = []
    for position, image_id in enumerate(ids):
        try:
            image_path = contained_path(voc_dir, "JPEGImages", f"{image_id}.jpg")
            if has_xml:
                xml_path = contained_path(voc_dir, "Annotations", f"{image_id}.xml")
                annotation = parse_voc_xml(xml_path, classes)
                check_image(image_path, verify_images, (annotation.width, annotation.height))
            else:
                width, height = check_image(image_path, verify_images)
                annotation = ImageAnnotation(image_id, image_path.name, width, height, 3, False, ())
        except DataError as error:
            policy.report(error)
            continue
        if not has_boxes:
            annotation = ImageAnnotation(
                image_id, annotation.filename, annotation.width, annotation.height, 3, False, ()
            )
        if flags is None:
            labels, weights = image_labels(annotation, classes, difficult_labels)
        else:
            labels, weights = flag_labels(flags[position], difficult_labels)
        records.append(ImageRecord(annotation, image_path, labels, weights))
    return records, has_boxes
