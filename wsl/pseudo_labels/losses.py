"""Losses of one refinement stream of one image: OICR's and PCL's, with autograd.

``probs`` (R, C + 1) are a stream's softmax scores (``RefinementHeads``, background column 0);
``targets`` its ``ProposalTargets`` (``oicr_targets`` or ``pcl_targets``). Both losses are
normalised by the number R of proposals, as the authors' code. The authors sum the K streams'
losses with the MIL (WSDDN) loss (pcl.pytorch ``lib/modeling/model_builder.py``; the Caffe
prototxt: ``loss_weight: 1`` each; pcl.pytorch master also weighs stream 0 by 3).
:func:`stream_losses` runs the whole chain for a batch of images, as ``WSDDN`` gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from wsl.pseudo_labels.oicr import BG_THRESHOLD, ProposalTargets, oicr_targets
from wsl.pseudo_labels.pcl import pcl_targets

OICR_EPS = 1e-6  # OICRLosses: log(prob + eps)
PCL_EPS = 1e-9  # PCLLosses: probabilities clamped to at least eps before the log


def oicr_loss(probs: Tensor, targets: ProposalTargets) -> Tensor:
    """Weighted cross-entropy ``mean_r -w_r log(p_r[y_r] + 1e-6)`` over the R proposals.

    pcl.pytorch ``lib/model/pcl/pcl.py``: ``OICRLosses.forward``. The Caffe original
    (ppengtang/caffe ``weighted_softmax_loss_layer.cpp``) has the same terms, divided by the
    number of proposals with a weight above 1e-12 (``VALID`` normalisation): R as well, since
    its OICR layer ignores no proposal.
    """
    _check(probs, targets)
    picked = probs.gather(1, targets.labels[:, None]).squeeze(1)
    return -(targets.weights * (picked + OICR_EPS).log()).mean()


def pcl_loss(probs: Tensor, targets: ProposalTargets) -> Tensor:
    """PCL's loss, divided by R (pcl.pytorch ``PCLLosses``; master's PyTorch ``forward``, the
    0.4.0 branch's C layer ``pcl_losses.c`` computes the same value).

    Background proposals (cluster -1), one by one: ``-w_r log p_r[0]``. Each proposal cluster
    ``n`` of label ``y_n``, as a whole: ``-(sum_{r in n} w_r) log(mean_{r in n} p_r[y_n])``.
    Probabilities are clamped to at least 1e-9. Autograd's gradient is the C layer's hand-written
    ``backward``: ``-w_r / p_r[0] / R`` for background and
    ``-(sum_{r in n} w_r) / (|n| mean_{r in n} p_r[y_n]) / R`` for the members of cluster ``n``.
    A centre without members (a duplicate box) adds nothing.
    """
    _check(probs, targets)
    picked = probs.gather(1, targets.labels[:, None]).squeeze(1).clamp(min=PCL_EPS)
    background = targets.clusters < 0
    loss = -(targets.weights[background] * picked[background].log()).sum()
    member = ~background
    num_centres = len(targets.centre_labels)
    cluster = targets.clusters[member]
    zeros = probs.new_zeros(num_centres)
    prob_sum = zeros.index_add(0, cluster, picked[member])
    weight_sum = zeros.index_add(0, cluster, targets.weights[member].to(probs))
    count = zeros.index_add(0, cluster, torch.ones_like(picked[member]))
    used = count > 0
    loss = loss - (weight_sum[used] * (prob_sum[used] / count[used]).log()).sum()
    return loss / max(len(probs), 1)


TargetsFn = Callable[..., ProposalTargets]  # (boxes, scores, image_labels, *, bg_threshold)
LossFn = Callable[[Tensor, ProposalTargets], Tensor]
METHODS: dict[str, tuple[TargetsFn, LossFn]] = {
    "oicr": (oicr_targets, oicr_loss),
    "pcl": (pcl_targets, pcl_loss),
}


def stream_losses(
    method: str,
    boxes: Tensor,
    region_image: Tensor,
    region_scores: Tensor,
    stream_probs: Sequence[Tensor],
    labels: Tensor,
    bg_threshold: float = BG_THRESHOLD,
) -> Tensor:
    """(K,) the loss of each refinement stream, the mean over the batch's N images.

    ``method``: "oicr" or "pcl". ``boxes`` (R, 4), ``region_image`` (R,), ``region_scores``
    (R, C): the proposals and ``WSDDNOutput``'s fields (regions grouped by image, in image
    order); ``stream_probs``: the K (R, C + 1) outputs of ``RefinementHeads``; ``labels`` (N, C).
    Stream 0 learns from ``region_scores``, stream k from stream k - 1's probabilities without
    the background column, detached (the authors' pseudo labels are numpy constants).
    ``bg_threshold``: proposals overlapping every centre by less are ignored (weight 0). The
    authors' batch is one image per GPU (Detectron averages the GPUs' losses): here the
    per-image losses are averaged. Custom thresholds: call the targets and loss functions.
    """
    if method not in METHODS:
        raise ValueError(f"unknown refinement method {method!r}; choose one of {list(METHODS)}")
    make_targets, loss_fn = METHODS[method]
    counts = torch.bincount(region_image, minlength=len(labels)).tolist()
    previous = [region_scores, *(p[:, 1:] for p in stream_probs[:-1])]
    losses = []
    for prev, probs in zip(previous, stream_probs, strict=True):
        per_image = [
            loss_fn(p, make_targets(b, s.detach(), y, bg_threshold=bg_threshold))
            for b, s, p, y in zip(
                boxes.split(counts), prev.split(counts), probs.split(counts), labels, strict=True
            )
        ]
        losses.append(torch.stack(per_image).mean())
    return torch.stack(losses)


def _check(probs: Tensor, targets: ProposalTargets) -> None:
    """Raises, saying what is wrong, unless ``probs`` is (R, C + 1) for R targets."""
    if probs.ndim != 2 or len(probs) != len(targets.labels):
        raise ValueError(
            f"probs must be (R, C + 1) with R = {len(targets.labels)} proposals, got "
            f"{tuple(probs.shape)}"
        )
    if len(targets.labels) and int(targets.labels.max()) >= probs.shape[1]:
        raise ValueError(
            f"a pseudo label is {int(targets.labels.max())} but probs have only "
            f"{probs.shape[1]} columns (background first, then the C classes)"
        )
