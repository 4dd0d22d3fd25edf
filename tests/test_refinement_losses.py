"""OICR's and PCL's losses against their formulas; PCL's gradient against the C layer's."""

from __future__ import annotations

import math

import pytest
import torch

from wsl.pseudo_labels.losses import oicr_loss, pcl_loss, stream_losses
from wsl.pseudo_labels.oicr import ProposalTargets

PROBS = [
    [0.2, 0.5, 0.3],
    [0.1, 0.6, 0.3],
    [0.7, 0.2, 0.1],
    [0.1, 0.1, 0.8],
    [0.5, 0.25, 0.25],
]


def targets(
    labels: list[int], weights: list[float], clusters: list[int], centre_labels: list[int]
) -> ProposalTargets:
    return ProposalTargets(
        torch.tensor(labels),
        torch.tensor(weights),
        torch.tensor(clusters),
        torch.zeros(len(centre_labels), 4),
        torch.tensor(centre_labels),
        torch.ones(len(centre_labels)),
    )


def test_oicr_loss_is_the_weighted_cross_entropy_mean() -> None:
    probs = torch.tensor(PROBS[:3], requires_grad=True)
    t = targets([1, 0, 2], [0.5, 0.2, 0.0], [0, -1, -1], [1])
    loss = oicr_loss(probs, t)
    expected = -(0.5 * math.log(0.5 + 1e-6) + 0.2 * math.log(0.1 + 1e-6)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    grad = torch.zeros(3, 3)
    grad[0, 1], grad[1, 0] = -0.5 / (0.5 + 1e-6) / 3, -0.2 / (0.1 + 1e-6) / 3
    torch.testing.assert_close(probs.grad, grad)


# proposals 0, 1: cluster 0 (label 1); 3: cluster 1 (label 2); 2: background; 4: ignored
PCL_TARGETS = targets([1, 1, 0, 2, 0], [0.9, 0.9, 0.9, 0.6, 0.0], [0, 0, -1, 1, -1], [1, 2])


def test_pcl_loss_is_the_cluster_level_formula() -> None:
    loss = pcl_loss(torch.tensor(PROBS), PCL_TARGETS)
    expected = (
        -0.9 * math.log(0.7)  # background proposal 2
        - (0.9 + 0.9) * math.log((0.5 + 0.6) / 2)  # cluster 0: mean of p[1] over 0 and 1
        - 0.6 * math.log(0.8)  # cluster 1: proposal 3 alone
    ) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_pcl_gradient_is_the_authors_backward() -> None:
    """pcl.pytorch 0.4.0 ``lib/model/pcl_losses/src/pcl_losses.c``, ``pcl_losses_backward``:
    ``-w_i / p_i0`` for background, ``-W_n / (count_n * pc_prob_n)`` for cluster members, / R."""
    probs = torch.tensor(PROBS, requires_grad=True)
    pcl_loss(probs, PCL_TARGETS).backward()
    p, grad = torch.tensor(PROBS), torch.zeros(5, 3)
    t = PCL_TARGETS
    members = {n: [i for i in range(5) if t.clusters[i] == n] for n in (0, 1)}
    for i in range(5):
        label, n = int(t.labels[i]), int(t.clusters[i])
        if label == 0:
            grad[i, 0] = -t.weights[i] / p[i, 0]
        else:
            weight_sum = sum(float(t.weights[j]) for j in members[n])
            pc_prob = sum(float(p[j, label]) for j in members[n]) / len(members[n])
            grad[i, label] = -weight_sum / (len(members[n]) * pc_prob)
    torch.testing.assert_close(probs.grad, grad / 5)


def test_pcl_loss_clamps_and_skips_empty_clusters() -> None:
    probs = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # proposal 0 is background with p0 = 0
    t = targets([0, 1], [0.5, 0.7], [-1, 0], [1, 1])  # centre 1 has no member
    expected = -(0.5 * math.log(1e-9) + 0.7 * math.log(1e-9)) / 2
    assert pcl_loss(probs, t).item() == pytest.approx(expected, rel=1e-5)


# two images: 0 has boxes 0-2 and class 0, 1 has boxes 3-4 and class 1
BATCH_BOXES = torch.tensor(
    [[0.0, 0, 9, 9], [0, 0, 9, 4], [50, 50, 59, 59], [0, 0, 9, 9], [100, 100, 109, 109]]
)
REGION_IMAGE = torch.tensor([0, 0, 0, 1, 1])
WSDDN_SCORES = torch.tensor([[0.6, 0.0], [0.2, 0.0], [0.1, 0.0], [0.0, 0.1], [0.0, 0.5]])
STREAM_PROBS = [
    torch.tensor(
        [[0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [0.3, 0.3, 0.4]]
    ),
    torch.tensor(
        [[0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]
    ),
]
IMAGE_LABELS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_stream_losses_chain_the_streams_over_a_batch() -> None:
    """Image 0: box 1 overlaps box 0 by 0.5, box 2 nothing (ignored); image 1: box 3 is disjoint
    from box 4 (ignored). Stream 0's seeds are WSDDN's (weights 0.6, 0.5), stream 1's are stream
    0's, background dropped (box 0 scores 0.7 for class 0, box 4 0.4 for class 1)."""
    losses = stream_losses(
        "oicr", BATCH_BOXES, REGION_IMAGE, WSDDN_SCORES, STREAM_PROBS, IMAGE_LABELS
    )
    eps = 1e-6
    first = (
        -(0.6 * math.log(0.7 + eps) + 0.6 * math.log(0.4 + eps)) / 3 - 0.5 * math.log(0.4 + eps) / 2
    ) / 2
    second = (
        -(0.7 * math.log(0.8 + eps) + 0.7 * math.log(0.6 + eps)) / 3 - 0.4 * math.log(0.8 + eps) / 2
    ) / 2
    assert losses.tolist() == pytest.approx([first, second], rel=1e-6)


def test_stream_losses_keep_far_proposals_as_background_with_bg_threshold_0() -> None:
    """As above, but box 2 (image 0) and box 3 (image 1) are weighted background, as in the
    Caffe OICR layer: -0.6 log p(bg) and -0.5 log p(bg) in stream 0, -0.7 and -0.4 in stream 1."""
    losses = stream_losses(
        "oicr", BATCH_BOXES, REGION_IMAGE, WSDDN_SCORES, STREAM_PROBS, IMAGE_LABELS,
        bg_threshold=0.0,
    )  # fmt: skip
    log = lambda p: math.log(p + 1e-6)  # noqa: E731
    first = (-0.6 * (log(0.7) + log(0.4) + log(0.1)) / 3 - 0.5 * (log(0.6) + log(0.4)) / 2) / 2
    second = (-0.7 * (log(0.8) + log(0.6) + log(0.5)) / 3 - 0.4 * (log(0.2) + log(0.8)) / 2) / 2
    assert losses.tolist() == pytest.approx([first, second], rel=1e-6)


def test_stream_losses_with_pcl_clusters() -> None:
    """Each image's top k-means cluster is its best box alone: clusters {0, 1} and {4}."""
    losses = stream_losses(
        "pcl", BATCH_BOXES, REGION_IMAGE, WSDDN_SCORES, STREAM_PROBS[:1], IMAGE_LABELS
    )
    expected = (-1.2 * math.log((0.7 + 0.4) / 2) / 3 - 0.5 * math.log(0.4) / 2) / 2
    assert losses.tolist() == pytest.approx([expected], rel=1e-6)
    with pytest.raises(ValueError, match="unknown refinement method 'wsddn'"):
        stream_losses("wsddn", BATCH_BOXES, REGION_IMAGE, WSDDN_SCORES, STREAM_PROBS, IMAGE_LABELS)


def test_shapes_are_checked() -> None:
    t = targets([1, 0], [0.5, 0.5], [0, -1], [1])
    with pytest.raises(ValueError, match="R = 2 proposals"):
        oicr_loss(torch.full((3, 3), 1 / 3), t)
    with pytest.raises(ValueError, match="only 1 columns"):
        pcl_loss(torch.ones(2, 1), t)
