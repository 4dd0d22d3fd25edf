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
from PIL import Image

from wsl.data.annotations import VOCAnnotation, parse_voc_xml, read_class_list, read_image_set
from wsl.data.bad_input import BadInputPolicy, DataError
from wsl.data.labels import image_labels
from wsl.data.proposals import ProposalFilter, Proposals

log = logging.getLogger(__name__)

VERIFY_IMAGE_CHOICES = ("header", "full", "none")
_JPEG_END = b"\xff\xd9"


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


def read_rgb(path: Path) -> Image.Image:
    """Decode an image file to RGB, or raise :class:`DataError` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises many types for corrupt files
        raise DataError(path, f"cannot decode image ({error})") from None


def check_image(path: Path, annotation: VOCAnnotation, verify: str) -> None:
    """Check that an image exists, opens, matches its XML size and is not truncated."""
    if verify == "none":
        return
    if not path.is_file():
        raise DataError(path, "image file does not exist")
    try:
        with Image.open(path) as image:
            size = image.size
            if verify == "full":
                image.load()
    except Exception as error:  # PIL raises many types for corrupt files
        raise DataError(path, f"not a readable image ({error})") from None
    if size != (annotation.width, annotation.height):
        raise DataError(
            path,
            f"image is {size[0]}x{size[1]} but its annotation says "
            f"{annotation.width}x{annotation.height}",
        )
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with path.open("rb") as file:
            file.seek(-2, 2)
            if file.read(2) != _JPEG_END:
                raise DataError(path, "JPEG is truncated (no end-of-image marker)")


class VOCIndex:
    """All usable images of one split of a ``VOCdevkit/VOC2007`` folder.

    Args:
        root: folder that holds ``VOCdevkit/VOC2007``.
        split: image set name (``train``, ``val``, ``trainval``, ``test``, or any other
            ``ImageSets/Main/<split>.txt``).
        classes: class names in label order; ``None`` reads ``classes.txt`` or uses VOC's 20.
        difficult_labels: ``positive`` or ``ignore`` (see :mod:`wsl.data.labels`).
        proposals: where proposals come from, or ``None`` for image-level data only.
        proposal_filter: min size, duplicates and top-k applied to every image's proposals.
        on_error: ``raise`` a :class:`DataError`, or ``skip`` the image (logged, counted).
        verify_images: ``header`` (open, size, JPEG end marker), ``full`` (decode) or ``none``.
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
            xml_path = self.voc_dir / "Annotations" / f"{image_id}.xml"
            try:
                annotation = parse_voc_xml(xml_path, self.classes)
                image_path = self.voc_dir / "JPEGImages" / annotation.filename
                check_image(image_path, annotation, verify_images)
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
