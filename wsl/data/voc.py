"""A VOC split, read once: annotations, image-level labels, image checks and proposals.

:class:`VOCIndex` does all the reading and checking when it is built (at datamodule
setup), so bad input surfaces before training starts, never halfway through an epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from wsl.data.annotations import VOCAnnotation, parse_voc_xml, read_class_list, read_image_set
from wsl.data.bad_input import BadInputPolicy, DataError
from wsl.data.images import VERIFY_IMAGE_CHOICES, check_image
from wsl.data.labels import image_labels
from wsl.data.proposal_filter import ProposalFilter
from wsl.runtime.names import contained_path
from wsl.structures.proposals import Proposals

log = logging.getLogger(__name__)


class ProposalProvider(Protocol):
    """Anything that gives proposals for a list of images (``.mat`` files, selective search)."""

    def load(self, image_ids: list[str], image_paths: list[Path]) -> dict[str, Proposals]: ...

    def source(self, image_id: str, image_path: Path) -> str: ...


@dataclass(frozen=True)
class VOCRecord:
    """One usable image of a split with everything known about it."""

    annotation: VOCAnnotation
    image_path: Path
    labels: np.ndarray
    label_weights: np.ndarray
    proposals: Proposals | None = None

    @property
    def image_id(self) -> str:
        return self.annotation.image_id


def voc2007_dir(root: str | Path) -> Path:
    """``<root>/VOCdevkit/VOC2007``, with a clear error if ``root`` has another layout."""
    voc_dir = Path(root) / "VOCdevkit" / "VOC2007"
    if not voc_dir.is_dir():
        raise DataError(
            voc_dir,
            "not found: data.root must hold VOCdevkit/VOC2007 (run `make data` for the "
            "generated set or `python -m wsl.data.download voc2007 --root ROOT` for VOC)",
        )
    return voc_dir


class VOCIndex:
    """All usable images of one split of a ``VOCdevkit/VOC2007`` folder.

    Args:
        root: folder that holds ``VOCdevkit/VOC2007``.
        split: image set name (``train``, ``val``, ``trainval``, ``test``, or any other
            ``ImageSets/Main/<split>.txt``).
        classes: class names in label order; ``None`` reads ``classes.txt`` or uses VOC's 20.
        difficult_labels: ``positive``, ``ignore`` or ``negative`` (see :mod:`wsl.data.labels`).
        proposals: where proposals come from, or ``None`` for image-level data only.
        proposal_filter: min size, duplicates and top-k applied to every image's proposals.
        on_error: ``raise`` a :class:`DataError`, or ``skip`` the image (logged, counted).
        verify_images: ``header``, ``full`` or ``none`` (see :func:`~wsl.data.images.check_image`).
    """

    # The file its object boxes come from when they are pseudo boxes
    # (:func:`wsl.data.pseudo_ground_truth.with_pseudo_boxes`); None: the XML annotations.
    pseudo_labels: Path | None = None

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
        if verify_images not in VERIFY_IMAGE_CHOICES:
            raise ValueError(
                f"data.verify_images={verify_images!r} is not valid; "
                f"choose one of {VERIFY_IMAGE_CHOICES}"
            )
        self.voc_dir = voc2007_dir(root)
        self.split = split
        self.classes = tuple(classes) if classes else read_class_list(self.voc_dir)
        self.policy = BadInputPolicy(on_error)
        records = self._read_annotations(difficult_labels, verify_images)
        if proposals is not None:
            records = self._attach_proposals(
                records, proposals, proposal_filter or ProposalFilter()
            )
        if not records:
            raise DataError(self.voc_dir, f"split {split!r} has no usable image left")
        self.records: list[VOCRecord] = records
        if self.policy.skip_count:
            log.warning(
                "%s: skipped %d of %d images of split %r (data.on_error=skip)",
                self.voc_dir,
                self.policy.skip_count,
                self.policy.skip_count + len(records),
                split,
            )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> VOCRecord:
        return self.records[index]

    def _read_annotations(self, difficult_labels: str, verify_images: str) -> list[VOCRecord]:
        records = []
        for image_id in read_image_set(self.voc_dir, self.split):
            xml_path = contained_path(self.voc_dir, "Annotations", f"{image_id}.xml")
            try:
                annotation = parse_voc_xml(xml_path, self.classes)
                image_path = contained_path(self.voc_dir, "JPEGImages", f"{image_id}.jpg")
                check_image(image_path, annotation.width, annotation.height, verify_images)
            except DataError as error:
                self.policy.report(error)
                continue
            labels, weights = image_labels(annotation, self.classes, difficult_labels)
            records.append(VOCRecord(annotation, image_path, labels, weights))
        return records

    def _attach_proposals(
        self, records: list[VOCRecord], provider: ProposalProvider, proposal_filter: ProposalFilter
    ) -> list[VOCRecord]:
        by_id = provider.load([r.image_id for r in records], [r.image_path for r in records])
        kept = []
        for record in records:
            source = provider.source(record.image_id, record.image_path)
            try:
                proposals = proposal_filter.apply(
                    by_id[record.image_id],
                    record.annotation.width,
                    record.annotation.height,
                    source,
                )
            except DataError as error:
                self.policy.report(error)
                continue
            kept.append(
                VOCRecord(
                    record.annotation,
                    record.image_path,
                    record.labels,
                    record.label_weights,
                    proposals,
                )
            )
        return kept
