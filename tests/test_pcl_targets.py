"""PCL's top-ranking proposals, graph centres and clusters on a graph small enough to check by hand.

Boxes are inclusive 10x10 squares and slightly cut copies. Graph edges need IoU > 0.4:
- group A (proposals 0-3): ``[0,0,9,9]``, ``[0,0,9,8]``, ``[0,1,9,9]``, ``[0,0,8,9]``; pairwise
  IoU 0.9, 0.9, 0.9, 0.8, 81/99, 81/99: all connected, degree 4 (self included);
- group B (4-6): the same three first shapes at (100, 100): degree 3;
- group C (7-8): two at (300, 300): degree 2; singletons 9-11 at 400, 500, 600: degree 1;
- 12-14 score low (0.3, mid k-means cluster), 15-17 lower (0.01): not in the graph.

Centres: A's degree 4 is highest; of its four tied nodes the last (proposal 3) is the centre,
scored by A's best score 0.95; 12 - 4 = 8 nodes remain, more than 5, so B follows (its last
node, proposal 6, score 0.93); then 5 remain: stop. The singleton scoring 0.94 is no centre.
"""

from __future__ import annotations

import pytest
import torch

from wsl.pseudo_labels.pcl import graph_centres, pcl_targets, top_ranking


def square(x: float, y: float, cut: tuple[int, int, int, int] = (0, 0, 0, 0)) -> list[float]:
    """The 10x10 inclusive box at ``x, y`` with ``cut`` pixels taken off (x1, y1, x2, y2)."""
    return [x + cut[0], y + cut[1], x + 9 - cut[2], y + 9 - cut[3]]


CUTS = [(0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 0, 0), (0, 0, 1, 0)]
BOXES = torch.tensor(
    [square(0, 0, c) for c in CUTS]  # A: 0-3
    + [square(100, 100, c) for c in CUTS[:3]]  # B: 4-6
    + [square(300, 300, c) for c in CUTS[:2]]  # C: 7-8
    + [square(400, 400), square(500, 500), square(600, 600)]  # singletons: 9-11
    + [[0, 0, 9, 3], [0, 0, 9, 0], [700, 700, 709, 709]]  # low: 12-14
    + [[100, 100, 109, 104], [0, 0, 8, 0], [800, 800, 809, 809]]  # lowest: 15-17
)
CLASS_SCORES = [0.91, 0.92, 0.95, 0.90, 0.93, 0.90, 0.91, 0.90, 0.92, 0.94, 0.90, 0.91]
CLASS_SCORES += [0.3, 0.31, 0.29, 0.01, 0.02, 0.01]


def scores_for(*columns: list[float]) -> torch.Tensor:
    return torch.tensor(columns).T.contiguous()


def test_top_ranking_keeps_the_highest_kmeans_cluster() -> None:
    scores = torch.tensor([0.9, 0.85, 0.1, 0.12, 0.5, 0.52, 0.11])
    assert top_ranking(scores).tolist() == [0, 1]
    assert top_ranking(torch.tensor(CLASS_SCORES)).tolist() == list(range(12))
    # seeds 1.0, 0, 0.5 first put 0.74 with 0.5; Lloyd's steps move it to the top cluster
    assert top_ranking(torch.tensor([0.0, 0.45, 0.5, 0.74, 0.76, 1.0])).tolist() == [3, 4, 5]
    assert top_ranking(torch.tensor([0.3, 0.7])).tolist() == [1]  # fewer scores than clusters
    assert top_ranking(torch.tensor([0.4, 0.4, 0.4, 0.4])).tolist() == [0, 1, 2, 3]


def test_graph_centres_by_degree_until_five_nodes_remain() -> None:
    indices, labels, centre_scores = graph_centres(
        BOXES, scores_for(CLASS_SCORES), torch.tensor([1.0])
    )
    assert indices.tolist() == [3, 6]  # A's last node, then B's
    assert labels.tolist() == [1, 1]
    assert centre_scores.tolist() == pytest.approx([0.95, 0.93])


def test_max_centres_keeps_the_best_scored() -> None:
    scores = list(CLASS_SCORES)
    scores[4] = 0.99  # B's best score now beats A's
    indices, _, centre_scores = graph_centres(
        BOXES, scores_for(scores), torch.tensor([1.0]), max_centres=1
    )
    assert indices.tolist() == [6] and centre_scores.tolist() == pytest.approx([0.99])


def test_a_centre_leaves_the_pool_of_later_classes() -> None:
    """Class 1 scores high on proposals 3 (0.9) and 0 (0.8) only; 3 is already class 0's centre,
    so class 1's top cluster is proposal 0 alone, its only centre."""
    second = [0.01] * len(CLASS_SCORES)
    second[3], second[0] = 0.9, 0.8
    second[12:15] = [0.3, 0.3, 0.3]
    indices, labels, centre_scores = graph_centres(
        BOXES, scores_for(CLASS_SCORES, second), torch.tensor([1.0, 1.0])
    )
    assert indices.tolist() == [3, 6, 0]
    assert labels.tolist() == [1, 1, 2]
    assert centre_scores.tolist() == pytest.approx([0.95, 0.93, 0.8])


def test_pcl_targets_assign_every_proposal_to_its_nearest_centre() -> None:
    """Centres 3 (cluster 0) and 6 (cluster 1). A's other boxes overlap 3 by ≥ 81/99, B's
    overlap 6 by 0.9 and 0.8: their clusters. Background: 12 ``[0,0,9,3]`` overlaps 3 by
    36/94 = 0.38 (weight 0.95); 15 ``[100,100,109,104]`` overlaps 6 by 40/100 = 0.4 (weight
    0.93); 16 ``[0,0,8,0]`` overlaps 3 by 9/90 = 0.1 (kept, 0.95); 13 ``[0,0,9,0]`` by
    9/91 < 0.1 and the far boxes by 0: ignored (weight 0)."""
    t = pcl_targets(BOXES, scores_for(CLASS_SCORES), torch.tensor([1.0]))
    assert t.clusters.tolist() == [0, 0, 0, 0, 1, 1, 1] + [-1] * 11
    assert t.labels.tolist() == [1] * 7 + [0] * 11
    expected = [0.95] * 4 + [0.93] * 3 + [0.0] * 5 + [0.95, 0.0, 0.0, 0.93, 0.95, 0.0]
    assert t.weights.tolist() == pytest.approx(expected)
    assert t.centre_boxes.tolist() == [BOXES[3].tolist(), BOXES[6].tolist()]


@pytest.mark.parametrize(
    ("lefts", "centres"),
    [
        # degrees 1 2 3 3 3 4 3 3 2 2: node 5 takes {4,5,6,7}; 6 remain; node 3 drops to
        # degree 2 (4 is gone), so node 2 (degree 3) is next and takes {1,2,3}: 3 remain, stop
        ([1, 9, 13, 17, 20, 22, 25, 26, 34, 38], [5, 2]),
        # degrees 2 2 1 1 3 3 4 4 3 3: node 7 (last of the 4s) takes {6,7,8,9}; node 6, gone,
        # keeps an edge to 4 and 5 but is no candidate: of degrees 2 (0, 1, 4, 5) the last, 5
        ([0, 3, 10, 17, 26, 28, 29, 33, 36, 37], [7, 5]),
    ],
)
def test_degrees_follow_the_nodes_that_leave_the_graph(
    lefts: list[int], centres: list[int]
) -> None:
    """10x10 boxes side by side: ``[x, 0, x + 9, 9]`` and ``[x + d, ...]`` have IoU
    ``(10 - d) / (10 + d)``, above 0.4 for ``d`` ≤ 4 (6/14) and below for 5 (5/15). Node ``i``
    scores ``0.9 + 0.005 i``; six far boxes score 0.3 and 0.01 (the lower k-means clusters)."""
    boxes = [[x, 0, x + 9, 9] for x in lefts] + [
        [200 + 20 * i, 100, 209 + 20 * i, 109] for i in range(6)
    ]
    scores = [0.9 + 0.005 * i for i in range(10)] + [0.3, 0.3, 0.3, 0.01, 0.01, 0.01]
    indices, _, _ = graph_centres(
        torch.tensor(boxes, dtype=torch.float32), scores_for(scores), torch.tensor([1.0])
    )
    assert indices.tolist() == centres
