"""The torch ``Dataset`` over a split (:class:`~wsl.data.split_index.SplitIndex`): decode,
transform, package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from wsl.data.bad_input import DataError
from wsl.data.images import read_rgb_tensor
from wsl.data.split_index import SplitIndex
from wsl.structures.boxes import continuous_to_inclusive, inclusive_to_continuous, unique_at_scale

Sample = dict[str, Any]


class VOCDataset(Dataset):
    """Samples of one split; boxes are inclusive pixels of the transformed image.

    Each sample is a dict with ``image`` (float ``3xHxW``), ``labels`` and
    ``label_weights`` (``C``), ``gt_boxes`` (``Nx4``),
    ``original_gt_boxes`` (the same on the image on disk), ``gt_classes``, ``gt_difficult``,
    ``image_id``, ``index``, ``original_size`` and ``input_size`` (``(H, W)``), and with
    ``with_proposals`` also ``proposals`` (``Kx4``) and ``proposal_scores`` (``K``, or ``None``).

    An image that fails to decode raises :class:`DataError`, or returns ``None`` with
    ``data.on_error=skip`` (the collate function drops it).

    ``dedup_scale`` (training sets, ``data.proposal_filter.dedup_scale``): after the transform,
    of the proposals whose coordinates times it round alike, only the first is kept (with its
    score), as OICR's and PCL's ``DEDUP_BOXES``.
    """

    def __init__(
        self,
        index: SplitIndex,
        transform: Callable[[Sample], Sample] | None = None,
        with_proposals: bool = False,
        dedup_scale: float | None = None,
    ) -> None:
        if with_proposals and any(r.proposals is None for r in index.records):
            raise ValueError("with_proposals=True needs a SplitIndex built with proposals")
        self.index = index
        self.transform = transform
        self.with_proposals = with_proposals
        self.dedup_scale = dedup_scale

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Sample | None:
        record = self.index[i]
        try:
            image = read_rgb_tensor(record.image_path)
        except DataError as error:
            self.index.policy.report(error)
            return None
        canvas = (record.annotation.height, record.annotation.width)

        def boxes(array) -> tv_tensors.BoundingBoxes:
            continuous = inclusive_to_continuous(torch.as_tensor(array, dtype=torch.float32))
            return tv_tensors.BoundingBoxes(continuous, format="XYXY", canvas_size=canvas)

        sample: Sample = {
            "image": tv_tensors.Image(image),
            "gt_boxes": boxes(record.annotation.boxes()),
        }
        if self.with_proposals:
            sample["proposals"] = boxes(record.proposals.boxes)
        if self.transform is not None:
            sample = self.transform(sample)
        for key in ("gt_boxes", "proposals"):
            if key in sample:
                sample[key] = continuous_to_inclusive(sample[key].as_subclass(torch.Tensor))
        sample["image"] = sample["image"].as_subclass(torch.Tensor)
        sample.update(
            labels=torch.from_numpy(record.labels),
            label_weights=torch.from_numpy(record.label_weights),
            original_gt_boxes=torch.from_numpy(record.annotation.boxes()),
            gt_classes=torch.from_numpy(record.annotation.class_indices(self.index.classes)),
            gt_difficult=torch.from_numpy(record.annotation.difficult_mask()),
            image_id=record.image_id,
            index=i,
            original_size=canvas,
            input_size=tuple(sample["image"].shape[-2:]),
        )
        if self.with_proposals:
            scores = record.proposals.scores
            sample["proposal_scores"] = None if scores is None else torch.from_numpy(scores)
            if self.dedup_scale is not None:
                keep = unique_at_scale(sample["proposals"], self.dedup_scale)
                sample["proposals"] = sample["proposals"][keep]
                if scores is not None:
                    sample["proposal_scores"] = sample["proposal_scores"][keep]
        return sample
