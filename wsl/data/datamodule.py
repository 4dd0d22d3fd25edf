"""LightningDataModules over a data set's splits: image-level labels (Localizer) and proposals
(WSDDN and the refinement families), in any layout of :mod:`wsl.data.layouts` (VOC, COCO,
image tags).

Both read each split once at ``setup`` (a :class:`~wsl.data.split_index.SplitIndex`), so bad
input is reported before the first step. Which split serves which stage is configurable
(``data.train_split``, ``data.val_split``, ``data.test_split``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from wsl.data.dataset import Sample, VOCDataset
from wsl.data.layouts import DataLayout, build_layout
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.pseudo_ground_truth import with_pseudo_boxes
from wsl.data.split_index import ProposalProvider, SplitIndex
from wsl.data.transforms import build_transform
from wsl.runtime.names import name_problem
from wsl.runtime.settings import SettingError

log = logging.getLogger(__name__)

# Per-image entries that stay lists in a batch (their lengths differ between images).
_LIST_KEYS = (
    "gt_boxes", "original_gt_boxes", "gt_classes", "gt_difficult", "image_id", "index",
    "original_size", "input_size", "proposals", "proposal_scores",
)  # fmt: skip


class ProposalSource(Protocol):
    """A proposal method as ``data.proposals`` names it (``conf/data/proposals/*.yaml``):
    :class:`~wsl.data.proposals.MatProposalFiles`,
    :class:`~wsl.data.selective_search.SelectiveSearchProposals`, ..."""

    def for_split(self, split: str) -> ProposalProvider: ...


def checked_classes(classes: Sequence[str] | None) -> list[str] | None:
    """``data.classes`` as a list (``None`` when not given), refusing a name that is not plain
    (see :func:`~wsl.runtime.names.name_problem`) or is listed twice."""
    if not classes:
        return None
    for position, name in enumerate(classes):
        problem = name_problem(name)
        if problem is not None:
            raise SettingError(
                f"data.classes[{position}]={name!r} is not a plain name ({problem}); class names "
                f"become file names (comp4_det_<split>_<class>.txt): rename it in data.classes"
            )
    duplicates = [name for name, count in Counter(classes).items() if count > 1]
    if duplicates:
        raise SettingError(f"data.classes lists {', '.join(duplicates)} more than once")
    return list(classes)


def collate_stacked(samples: Sequence[Sample | None]) -> dict[str, Any] | None:
    """Batch same-size images into one tensor; per-image boxes stay lists."""
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    batch: dict[str, Any] = {
        key: [s[key] for s in samples] for key in _LIST_KEYS if key in samples[0]
    }
    for key in ("image", "labels", "label_weights"):
        batch[key] = torch.stack([s[key] for s in samples])
    return batch


def collate_padded(samples: Sequence[Sample | None]) -> dict[str, Any] | None:
    """Batch images of different sizes: zero-pad (the mean colour after normalisation)
    at the bottom and right to the largest height and width in the batch."""
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    height = max(s["image"].shape[1] for s in samples)
    width = max(s["image"].shape[2] for s in samples)
    padded = samples[0]["image"].new_zeros(len(samples), 3, height, width)
    for i, s in enumerate(samples):
        padded[i, :, : s["image"].shape[1], : s["image"].shape[2]] = s["image"]
    return collate_stacked([{**s, "image": padded[i]} for i, s in enumerate(samples)])


class VOCDataModule(pl.LightningDataModule):
    """Shared settings of the two datamodules (see ``conf/data/*.yaml`` for each one).

    Args:
        root: the data set's folder (``VOCdevkit``'s parent for VOC, see
            :mod:`wsl.data.layouts`).
        train_split, val_split, test_split: image sets used for fit, validation and test.
        classes: class names in label order, each a plain name (checked here, the one place
            ``data.classes`` enters); ``None``: the layout's own list (VOC: ``classes.txt`` or
            VOC's 20; COCO: the categories; image tags: ``classes.txt`` or the sorted names).
        difficult_labels: ``positive`` (any instance), ``ignore`` (VOC classification) or
            ``negative`` (difficult objects dropped, as OICR's and PCL's code).
        on_error: ``raise`` on bad input, or ``skip`` the image (logged and counted).
        verify_images: ``header``, ``full`` or ``none`` image checks at setup.
        batch_size, num_workers: DataLoader settings (``num_workers`` processes decode).
        train_transform, eval_transform: keyword arguments of
            :func:`~wsl.data.transforms.build_transform`.
        pseudo_labels: a COCO-format pseudo-label file (:mod:`wsl.data.coco_pseudo_labels`):
            the training split's object boxes are its pseudo boxes, for a supervised detector;
            validation and test keep the annotations' boxes. ``None``: the annotations'
            everywhere.
        layout: how the data set lies on disk (``data.layout``, built from its ``_target_``:
            ``data/layout=voc|coco|image_tags``, :mod:`wsl.data.layouts`); ``None``: VOC.
    """

    collate = staticmethod(collate_stacked)
    with_proposals = False

    def __init__(
        self,
        root: str,
        train_split: str = "trainval",
        val_split: str = "test",
        test_split: str = "test",
        classes: Sequence[str] | None = None,
        difficult_labels: str = "positive",
        on_error: str = "raise",
        verify_images: str = "header",
        batch_size: int = 32,
        num_workers: int = 0,
        train_transform: Mapping[str, Any] | None = None,
        eval_transform: Mapping[str, Any] | None = None,
        pseudo_labels: str | None = None,
        layout: DataLayout | None = None,
    ) -> None:
        super().__init__()
        self.layout = build_layout(layout)
        self.root = Path(root)
        splits = {"fit": train_split, "validate": val_split, "test": test_split}
        self.splits = {stage: self.layout.split_name(s) for stage, s in splits.items()}
        self.classes = checked_classes(classes)
        self.difficult_labels = difficult_labels
        self.on_error = on_error
        self.verify_images = verify_images
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_transform = build_transform(**(train_transform or {}))
        self.eval_transform = build_transform(**(eval_transform or {}))
        self.pseudo_labels = None if pseudo_labels is None else Path(pseudo_labels)
        self.datasets: dict[str, VOCDataset] = {}

    def build_index(self, split: str) -> SplitIndex:
        """Read and check one split."""
        return self.layout.index(
            self.root,
            split,
            classes=self.classes,
            difficult_labels=self.difficult_labels,
            on_error=self.on_error,
            verify_images=self.verify_images,
            **self.proposal_arguments(split),
        )

    def proposal_arguments(self, split: str) -> dict[str, Any]:
        """Proposal settings of ``split`` for its index (none: image-level data)."""
        return {}

    def train_dedup_scale(self) -> float | None:
        """The scale at which a training set deduplicates its proposals (none here)."""
        return None

    def dataset(self, split: str, train: bool = False) -> VOCDataset:
        """The dataset of ``split`` with the train or eval transform (read once, cached); for
        training with the pseudo boxes of :attr:`pseudo_labels` when it is set."""
        key = f"{split}:{'train' if train else 'eval'}"
        if key not in self.datasets:
            index = next(
                (
                    d.index
                    for d in self.datasets.values()
                    if d.index.split == split and d.index.pseudo_labels is None
                ),
                None,
            )
            index = index or self.build_index(split)
            if train and self.pseudo_labels is not None:
                index = with_pseudo_boxes(index, self.pseudo_labels)
            transform = self.train_transform if train else self.eval_transform
            self.datasets[key] = VOCDataset(
                index,
                transform,
                with_proposals=self.with_proposals,
                dedup_scale=self.train_dedup_scale() if train else None,
            )
        return self.datasets[key]

    @property
    def class_names(self) -> list[str]:
        """Class names in label order: ``classes`` if given, else the data set's class list."""
        if self.classes:
            return self.classes
        return list(self.layout.classes(self.root, self.splits["fit"])[0])

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            warn_unlearnable_classes(self.dataset(self.splits["fit"], train=True).index)
            self.dataset(self.splits["validate"])
        if stage == "validate":
            self.dataset(self.splits["validate"])
        if stage in (None, "test"):
            self.dataset(self.splits["test"])

    def _loader(self, dataset: VOCDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset(self.splits["fit"], train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset(self.splits["validate"]), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset(self.splits["test"]), shuffle=False)


def warn_unlearnable_classes(index: SplitIndex) -> list[str]:
    """Warn once, naming them, about the classes no image of the training split ``index`` is
    labelled positive for (the model cannot learn them); return them."""
    positives = sum(
        ((record.labels > 0) & (record.label_weights > 0)).astype(int) for record in index.records
    )
    missing = [name for name, count in zip(index.classes, positives, strict=True) if count == 0]
    if missing:
        log.warning(
            "%s: no image of training split %r is positive for %s: the model cannot learn %s "
            "(check the class list and the labels)",
            index.data_dir, index.split, ", ".join(missing), "it" if len(missing) == 1 else "them",
        )  # fmt: skip
    return missing


class VOCImageLabelsDataModule(VOCDataModule):
    """Images and image-level labels (the Localizer's data), resized to a fixed square."""


class VOCProposalsDataModule(VOCDataModule):
    """Images, labels, region proposals and GT boxes (WSDDN's data).

    Images keep their aspect ratio, so a batch is zero-padded to its largest image; each
    image keeps its own number of proposals (``batch["proposals"]`` is a list).

    Args:
        proposals: where the proposals come from (``data.proposals``, instantiated from its
            ``_target_``; ``data/proposals=mat|edgeboxes|selective_search``). ``data.on_error``
            also applies to images a ``.mat`` lacks.
        proposal_filter: keyword arguments of :class:`~wsl.data.proposal_filter.ProposalFilter`.
    """

    collate = staticmethod(collate_padded)
    with_proposals = True

    def __init__(
        self,
        *args: Any,
        proposals: ProposalSource,
        proposal_filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not callable(getattr(proposals, "for_split", None)):
            raise TypeError(
                f"data.proposals must be a proposal method built from a _target_ "
                f"(data/proposals=mat|edgeboxes|selective_search, conf/data/proposals/), "
                f"got {proposals!r}"
            )
        self.proposals = proposals
        self.proposal_filter = ProposalFilter.of(proposal_filter)

    def proposal_arguments(self, split: str) -> dict[str, Any]:
        return {
            "proposals": self.proposals.for_split(split),
            "proposal_filter": self.proposal_filter,
        }

    def train_dedup_scale(self) -> float | None:
        """``data.proposal_filter.dedup_scale``, see
        :class:`~wsl.data.proposal_filter.ProposalFilter`."""
        return self.proposal_filter.dedup_scale
