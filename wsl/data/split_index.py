"""One split of a data set, read once: :class:`SplitIndex` and its :class:`ImageRecord` s.

Each layout reads its own files into records (:class:`~wsl.data.voc.VOCIndex`,
:class:`~wsl.data.coco.COCOIndex`, :class:`~wsl.data.image_tags.ImageTagsIndex`); this base
attaches and filters the proposals and counts what was skipped. Everything is read and checked
when the index is built (at datamodule setup), so bad input surfaces before training starts,
never halfway through an epoch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from wsl.data.annotations import ImageAnnotation
from wsl.data.bad_input import BadInputPolicy, DataError
from wsl.data.proposal_filter import ProposalFilter
from wsl.structures.proposals import Proposals

log = logging.getLogger(__name__)

_NUMBERED_ID = re.compile(r"\d+(_\d+)?")


class ProposalProvider(Protocol):
    """Anything that gives proposals for a list of images (``.mat`` files, selective search)."""

    def load(self, image_ids: list[str], image_paths: list[Path]) -> dict[str, Proposals]: ...

    def source(self, image_id: str, image_path: Path) -> str: ...


@dataclass(frozen=True)
class ImageRecord:
    """One usable image of a split with everything known about it (no objects where the data
    set has no boxes)."""

    annotation: ImageAnnotation
    image_path: Path
    labels: np.ndarray
    label_weights: np.ndarray
    proposals: Proposals | None = None

    @property
    def image_id(self) -> str:
        return self.annotation.image_id


class SplitIndex:
    """The usable images of one split, whatever layout they were read from.

    Attributes:
        data_dir: the folder the split was read from (named in messages).
        split: the split's name as configured.
        classes: class names in label order.
        policy: ``data.on_error`` with the count of skipped images.
        records: one :class:`ImageRecord` per usable image, in the split's order.
        has_boxes: whether the images carry object boxes (a data set of image tags has none;
            box metrics need them).
        category_ids: the COCO category id of each class (COCO data: the file's; else 1..C),
            for COCO-format results.
        devkit_results: where the test's VOC devkit results files go: a folder relative to
            the run directory (``""``: the run directory; VOC 2012 test: the evaluation
            server's ``results/VOC2012/Main``) and the split name in their file names; ``None``
            where the layout writes none.
    """

    # The file its object boxes come from when they are pseudo boxes
    # (:func:`wsl.data.pseudo_ground_truth.with_pseudo_boxes`); None: the data set's own.
    pseudo_labels: Path | None = None
    # The user's COCO file the boxes come from (COCO data), so results need no copy of it.
    ground_truth_file: Path | None = None
    # Whether a test of this layout writes VOC devkit results files.
    writes_devkit_results: bool = True

    def __init__(
        self,
        data_dir: Path,
        split: str,
        classes: Sequence[str],
        policy: BadInputPolicy,
        records: list[ImageRecord],
        has_boxes: bool,
        proposals: ProposalProvider | None = None,
        proposal_filter: ProposalFilter | None = None,
        category_ids: Sequence[int] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.split = split
        self.classes = tuple(classes)
        self.policy = policy
        self.has_boxes = has_boxes
        self.category_ids = tuple(category_ids or range(1, len(self.classes) + 1))
        file_split = split.replace("/", "-")
        self.devkit_results: tuple[str, str] | None = (
            ("", file_split) if self.writes_devkit_results else None
        )
        if proposals is not None:
            records = self._attach_proposals(
                records, proposals, proposal_filter or ProposalFilter()
            )
        if not records:
            raise DataError(data_dir, f"split {split!r} has no usable image left")
        self.records = records
        if policy.skip_count:
            log.warning(
                "%s: skipped %d of %d images of split %r (data.on_error=skip)",
                data_dir, policy.skip_count, policy.skip_count + len(records), split,
            )  # fmt: skip

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    def coco_image_ids(self) -> dict[str, int]:
        """A COCO image id (an integer) for each image id, for COCO-format results: the id's
        digits where every id is a number with at most one ``_`` (VOC's ``000005``,
        ``2008_000008`` -> ``2008000008``, as the field's COCO-format VOC files number them)
        and they stay distinct, else the image's position in the split, from 1."""
        ids = [record.image_id for record in self.records]
        if all(_NUMBERED_ID.fullmatch(i) for i in ids):
            numbers = [int(i.replace("_", "")) for i in ids]
            if len(set(numbers)) == len(numbers):
                return dict(zip(ids, numbers, strict=True))
        return {image_id: position for position, image_id in enumerate(ids, 1)}

    def _attach_proposals(
        self,
        records: list[ImageRecord],
        provider: ProposalProvider,
        proposal_filter: ProposalFilter,
    ) -> list[ImageRecord]:
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
            kept.append(replace(record, proposals=proposals))
        return kept
