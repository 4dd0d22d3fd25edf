"""OICR's and PCL's losses against their formulas; PCL's gradient against the C layer's."""

from __future__ import annotations

import math

import pytest
import torch

from wsl.training.oicr_targets import ProposalTargets
from wsl.training.refinement_losses import oicr_loss, pcl_loss

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


def test_shapes_are_checked() -> None:
    t = targets([1, 0], [0.5, 0.5], [0, -1], [1])
    with pytest.raises(ValueError, match="R = 2 proposals"):
        oicr_loss(torch.full((3, 3), 1 / 3), t)
    with pytest.raises(ValueError, match="only 1 columns"):
        pcl_loss(torch.ones(2, 1), t)
