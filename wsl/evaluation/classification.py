"""Multi-label image classification metrics: mAP and a thresholded "metric2".

AP is torchmetrics' binary average precision, one class at a time. Entries whose weight is
0 (VOC "difficult-only" classes under ``data.difficult_labels=ignore``) are left out of
their class. Classes without a positive get NaN and are left out of every mean: their AP
and recall are undefined.

"metric2" is a thresholded metric, to log beside the loss: while the loss drops steeply
in the first iterations (all scores fall towards 0), recall at 0.5 stays almost flat.
Scores are probabilities in ``[0, 1]`` (callers apply the sigmoid); a score counts as
positive when it is strictly above ``threshold`` (torchmetrics' rule).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_average_precision,
    binary_fbeta_score,
    binary_recall,
)

from wsl.evaluation.per_image import PerImageEvaluator

_IGNORE = -1  # target value of weight-0 entries, passed to torchmetrics as ignore_index


def _per_class(
    metric: Callable[..., Tensor], scores: Tensor, labels: Tensor, weights: Tensor | None
) -> Tensor:
    """``metric`` of each class with a counted positive (``(C,)``, NaN for the others)."""
    target = labels.long()
    if weights is not None:
        target = target.masked_fill(weights == 0, _IGNORE)
    per_class = torch.full((scores.shape[1],), float("nan"))
    for c in (target == 1).any(dim=0).nonzero().flatten().tolist():
        per_class[c] = metric(scores[:, c], target[:, c], ignore_index=_IGNORE)
    return per_class


def classification_map(
    scores: Tensor, labels: Tensor, weights: Tensor | None = None
) -> tuple[float, Tensor]:
    """Mean AP over classes with a positive, and the per-class AP (``(C,)``, NaN if absent)."""
    per_class = _per_class(binary_average_precision, scores, labels, weights)
    return per_class.nanmean().item(), per_class


def macro_recall(
    scores: Tensor, labels: Tensor, weights: Tensor | None = None, threshold: float = 0.5
) -> float:
    """Recall at ``threshold``, averaged over classes with a positive."""
    recall = partial(binary_recall, threshold=threshold)
    return _per_class(recall, scores, labels, weights).nanmean().item()


def f_beta(
    scores: Tensor,
    labels: Tensor,
    weights: Tensor | None = None,
    beta: float = 2.0,
    threshold: float = 0.5,
) -> float:
    """F-beta at ``threshold`` (beta 2 favours recall), averaged over classes with a positive."""
    fbeta = partial(binary_fbeta_score, beta=beta, threshold=threshold)
    return _per_class(fbeta, scores, labels, weights).nanmean().item()


METRIC2: dict[str, Callable[[Tensor, Tensor, Tensor | None], float]] = {
    "recall": macro_recall,
    "fbeta": f_beta,
}


def metric2(name: str, scores: Tensor, labels: Tensor, weights: Tensor | None = None) -> float:
    """The "metric2" called ``name`` (a key of ``METRIC2``) with its default settings."""
    if name not in METRIC2:
        raise ValueError(f"metric2={name!r} is not known; choose one of {sorted(METRIC2)}")
    return METRIC2[name](scores, labels, weights)


class MultilabelClassificationMetrics(PerImageEvaluator):
    """mAP and metric2 over every image of every step and every process.

    One record per image id, gathered across processes as the detection, CorLoc and pointing
    evaluators gather theirs (:mod:`wsl.evaluation.per_image`): the images a
    ``DistributedSampler`` pads in (repeats of images another rank holds) count once, and the
    images are ordered by id, so k processes give the single-process value.
    """

    def __init__(self, num_classes: int, metric2: str = "recall") -> None:
        super().__init__()
        if metric2 not in METRIC2:
            raise ValueError(f"metric2={metric2!r} is not known; choose one of {sorted(METRIC2)}")
        self.num_classes = num_classes
        self.metric2 = metric2

    def update(
        self,
        image_ids: Sequence[str],
        scores: Tensor,
        labels: Tensor,
        weights: Tensor | None = None,
    ) -> None:
        """Add a batch: its image ids, ``(B, C)`` probabilities, 0/1 labels and optional 0/1
        weights."""
        if scores.shape != labels.shape or scores.shape[1:] != (self.num_classes,):
            raise ValueError(
                f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} must both be "
                f"(batch, {self.num_classes})"
            )
        scores = scores.detach().cpu()  # its own precision: never rounded to float32
        labels = labels.detach().cpu().float()
        weights = torch.ones_like(labels) if weights is None else weights.detach().cpu().float()
        self._keep(image_ids, list(zip(scores, labels, weights, strict=True)))

    def compute(self) -> dict[str, Tensor]:
        """``{"mAP": 0-d, "metric2": 0-d, "ap_per_class": (C,)}``; NaN before any update."""
        records = self._gathered()
        if records:
            scores, labels, weights = (torch.stack(column) for column in zip(*records, strict=True))
        else:
            scores = labels = weights = torch.empty(0, self.num_classes)
        mean_ap, per_class = classification_map(scores, labels, weights)
        second = metric2(self.metric2, scores, labels, weights)
        return {
            "mAP": torch.tensor(mean_ap),
            "metric2": torch.tensor(second),
            "ap_per_class": per_class,
        }
