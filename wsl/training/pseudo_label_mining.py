"""Pseudo ground truth mined from a trained weak model over a split, the first half of the
second stage (issue 18): each image's detections (:meth:`WSLModule.detect`, every family, as
the test makes them) turned into pseudo boxes by a rule (:class:`PseudoLabelRule`: ``top1``,
OICR's ``lib/fast_rcnn/test_train.py``; ``pgf``, SoS-WSOD's ``tools/pgf.py``) for the classes of
its image-level labels, and the CorLoc of those pseudo boxes against the split's ground truth:
how right the detector's teacher is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from wsl.data.coco_pseudo_labels import PseudoLabelImage
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.pseudo_labels.mining import PseudoLabelRule, summary
from wsl.training.module import WSLModule, ground_truths_of


class MinedSplit(NamedTuple):
    """The pseudo boxes of every image of a split, with what they are worth."""

    images: list[PseudoLabelImage]  # in the loader's order, boxes in pixels of the image on disk
    counts: dict[str, int]  # images, pseudo_boxes, missing_classes (:func:`summary`)
    corloc: dict[str, Any]  # CorLoc and corloc_per_class of the pseudo boxes


def positive_classes(batch: Mapping[str, Any], i: int) -> list[int]:
    """The classes image ``i`` of ``batch`` is labelled with (label > 0 and not ignored)."""
    labels, weights = batch["labels"][i], batch["label_weights"][i]
    return ((labels > 0) & (weights > 0)).nonzero().squeeze(1).tolist()


def mine_split(
    module: WSLModule, batches: Iterable[Mapping[str, Any] | None], rule: PseudoLabelRule
) -> MinedSplit:
    """Pseudo boxes of every image of ``batches`` (a split's test-time loader; ``None``: a
    batch whose every image was skipped) by ``rule``, with their counts and CorLoc."""
    class_names = list(module.class_names)
    corloc = CorLocEvaluator(class_names)
    images, results = [], []
    for batch in batches:
        if batch is None:
            continue
        detections = module.detect(batch)
        mined = [
            rule.mine(found.cpu(), positive_classes(batch, i), class_names)
            for i, found in enumerate(detections)
        ]
        corloc.process(batch["image_id"], [m.labels for m in mined], ground_truths_of(batch))
        for image_id, (height, width), result in zip(
            batch["image_id"], batch["original_size"], mined, strict=True
        ):
            images.append(PseudoLabelImage(image_id, int(width), int(height), result.labels))
            results.append(result)
    return MinedSplit(images, summary(results), corloc.evaluate())
