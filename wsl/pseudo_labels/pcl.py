"""PCL's proposal clusters for one refinement stream of one image (Tang et al., TPAMI 2018).

Follows ppengtang/pcl.pytorch ``lib/model/pcl/pcl.py`` (branch 0.4.0 and master alike): ``PCL`` →
``_get_graph_centers`` (with ``_get_top_ranking_propoals`` and ``_build_graph``) and
``_get_proposal_clusters`` (the 0.4.0 version; master's ``get_proposal_clusters`` is the same
assignment, shared here with OICR as ``assign_to_centres``). For each class present in the image,
in ascending order:

1. *Top-ranking proposals*: 1-D k-means (``NUM_KMEANS_CLUSTER`` = 3) on the class's scores of
   the proposals still available; the cluster with the highest centre is kept (its argmax if empty).
2. *Graph*: an edge between two of them where their IoU exceeds ``GRAPH_IOU_THRESHOLD`` (0.4);
   every node has an edge to itself.
3. *Centres*: repeatedly the node of highest degree becomes a centre, scored by the highest
   score among it and its remaining neighbours, which leave the graph; this stops as soon as at
   most 5 nodes remain (a literal 5 in the code, not ``MAX_PC_NUM``), so there is always one.
4. The ``MAX_PC_NUM`` (5) highest-scoring centres are kept and leave the pool of proposals for
   the later classes.

Ties (frequent among degrees): the code takes the first of numpy's reversed ``argsort``, whose
order of equal values depends on numpy's sort implementation (numpy 1.x sorted arrays below 17
elements by insertion, i.e. stably; numpy 2 dispatches to SIMD sorts that depend on the CPU).
Here the order is that of a stable sort, reversed, always: the last tied node becomes the
centre, and of two centres with equal scores the later one ranks first. With that one change
(``kind="stable"`` in the code's two ``argsort`` calls), the code gives the same labels, weights
and clusters as this module on random images (checked on 300, with this module's k-means).

Then every proposal goes to its nearest centre as in OICR (``assign_to_centres``): IoU ≥ 0.5
joins that centre's cluster, below it is background, below 0.1 is ignored (weight 0).

The departure: ``sklearn.cluster.KMeans`` (k-means++ seeding, ``random_state=RNG_SEED``, best of
``n_init`` runs) is not a dependency here; :func:`top_ranking` runs Lloyd's algorithm in 1-D from
a deterministic farthest-first seeding instead, which finds the same top cluster wherever the
scores separate into clear groups (the usual case: a few high scores over many near 0), and may
differ where several local optima are close.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from wsl.pseudo_labels.oicr import (
    BG_THRESHOLD,
    FG_THRESHOLD,
    ProposalTargets,
    assign_to_centres,
    check_scores,
    present_classes,
)
from wsl.structures.boxes import voc_iou

GRAPH_IOU_THRESHOLD = 0.4  # cfg.TRAIN.GRAPH_IOU_THRESHOLD
MAX_CENTRES = 5  # cfg.TRAIN.MAX_PC_NUM
NUM_KMEANS_CLUSTERS = 3  # cfg.TRAIN.NUM_KMEANS_CLUSTER
STOP_REMAINING = 5  # _get_graph_centers: `if count <= 5: break`
KMEANS_MAX_ITER = 300  # sklearn KMeans' default max_iter


def top_ranking(scores: Tensor, num_clusters: int = NUM_KMEANS_CLUSTERS) -> Tensor:
    """Indices (ascending) of the 1-D k-means cluster of ``scores`` (K,) with the highest centre.

    Seeding: the highest score, then repeatedly the score farthest from the centres so far (the
    first on ties), a deterministic k-means++ that, like it, seeds the few high scores apart from
    the many low ones (quantile seeding would put every centre among the low ones). Then Lloyd's
    algorithm: each score joins its nearest centre (the first on ties), each centre moves to its
    members' mean (an empty cluster keeps its centre), until no score changes cluster. With fewer
    distinct scores than clusters, the extra centres repeat a score and stay empty. If the top
    cluster is empty: the argmax alone (as ``_get_top_ranking_propoals``).
    """
    values = scores.detach().to("cpu", torch.float64).flatten()
    centres = values.max().reshape(1)
    while len(centres) < num_clusters:
        distance = (values[:, None] - centres[None]).abs().min(dim=1).values
        centres = torch.cat([centres, values[distance.argmax()].reshape(1)])
    members = torch.full_like(values, -1, dtype=torch.int64)
    for _ in range(KMEANS_MAX_ITER):
        nearest = (values[:, None] - centres[None]).abs().argmin(dim=1)
        if torch.equal(nearest, members):
            break
        members = nearest
        for j in range(num_clusters):
            if bool((members == j).any()):
                centres[j] = values[members == j].mean()
    top = (members == int(centres.argmax())).nonzero().flatten()
    return top if len(top) else values.argmax().reshape(1)


def graph_centres(
    boxes: Tensor,
    scores: Tensor,
    image_labels: Tensor,
    graph_iou_threshold: float = GRAPH_IOU_THRESHOLD,
    max_centres: int = MAX_CENTRES,
    num_kmeans_clusters: int = NUM_KMEANS_CLUSTERS,
) -> tuple[Tensor, Tensor, Tensor]:
    """PCL's cluster centres of one image: (proposal indices (P,), labels (P,) in 1..C, scores
    (P,)), class by class (see the module docstring, steps 1-4). ``scores`` (R, C) as
    :func:`wsl.pseudo_labels.oicr.oicr_targets` takes them."""
    prob = check_scores(boxes, scores, image_labels)
    corners = boxes.detach().to("cpu", torch.float64).numpy()
    available = torch.ones(len(boxes), dtype=torch.bool)
    indices: list[int] = []
    labels: list[int] = []
    centre_scores: list[float] = []
    for c in present_classes(image_labels):
        pool = available.nonzero().flatten()
        nodes = pool[top_ranking(prob[pool, c], num_kmeans_clusters)]
        node_scores = prob[nodes, c].numpy()
        node_boxes = corners[nodes.numpy()]
        graph = voc_iou(node_boxes[:, None], node_boxes[None]) > graph_iou_threshold  # (K, K)
        degree = graph.sum(axis=1)  # the diagonal counts: a node is its own neighbour
        alive = np.ones(len(nodes), dtype=bool)  # nodes still in the graph
        picked: list[int] = []
        picked_scores: list[float] = []
        remaining = len(nodes)
        while True:  # numpy: a few hundred rounds of small steps, where torch's overhead shows
            candidates = np.where(alive, degree, -1)[::-1]
            node = len(degree) - 1 - int(candidates.argmax())  # the last of the maxima
            neighbours = graph[node] & alive
            picked.append(node)
            picked_scores.append(float(node_scores[neighbours].max()))
            alive &= ~neighbours  # the code zeroes their rows and columns of the graph
            degree -= graph[neighbours].sum(axis=0)  # the graph is symmetric
            remaining -= int(neighbours.sum())
            if remaining <= STOP_REMAINING:
                break
        order = torch.tensor(picked_scores).sort(stable=True).indices.flip(0)[:max_centres]
        for j in order.tolist():
            proposal = int(nodes[picked[j]])
            indices.append(proposal)
            labels.append(c + 1)
            centre_scores.append(picked_scores[j])
            available[proposal] = False
    return (
        torch.tensor(indices, dtype=torch.int64),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(centre_scores, dtype=torch.float64),
    )


def pcl_targets(
    boxes: Tensor,
    scores: Tensor,
    image_labels: Tensor,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
    graph_iou_threshold: float = GRAPH_IOU_THRESHOLD,
    max_centres: int = MAX_CENTRES,
    num_kmeans_clusters: int = NUM_KMEANS_CLUSTERS,
) -> ProposalTargets:
    """PCL's proposal clusters of one image: :func:`graph_centres`, then each proposal to its
    nearest centre (``assign_to_centres``). ``clusters`` index the centres; -1 is background."""
    indices, labels, centre_scores = graph_centres(
        boxes, scores, image_labels, graph_iou_threshold, max_centres, num_kmeans_clusters
    )
    return assign_to_centres(
        boxes,
        boxes[indices.to(boxes.device)],
        labels,
        centre_scores,
        fg_threshold,
        bg_threshold,
    )
