"""The generated data set's proposals: boxes drawn to mimic selective search's recall.

A few tight boxes around every object, every part of a two-part object and every growth box
(IoU >= 0.77 by construction), looser ones around them, boxes around pairs of objects, and
random boxes of many sizes and aspect ratios. Around a two-part object, boxes grow from the
head to the whole object (:func:`growth_boxes`), as selective search gives them. Real
selective search on real images is ``data/proposals=selective_search``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsl.data.generated_images import GeneratedObject

GROWTH = (1 / 3, 2 / 3)  # growth boxes: how far each edge goes from a head's box to its object's


def synthetic_proposals(
    rng: np.random.Generator,
    objects: Sequence[GeneratedObject],
    width: int,
    height: int,
    count: int,
) -> np.ndarray:
    """About ``count`` unique, shuffled boxes (0-based inclusive xyxy, ints) inside the image.

    Around every object and every part of one, and every growth box of a two-part object
    (:func:`growth_boxes`): a few tight boxes (each edge moved by at most 6 % of the box's
    side, so IoU >= 0.77) and looser ones; one box around each pair of objects; the rest
    random, of log-uniform size and aspect ratio 1:3 to 3:1.
    """
    boxes = []
    n_tight, n_loose = max(2, round(0.03 * count)), max(2, round(0.08 * count))
    for box in [b for obj in objects for b in (obj.box, *obj.parts, *growth_boxes(obj))]:
        gt = np.array(box, dtype=float)
        sides = np.tile(gt[2:] - gt[:2] + 1, 2)
        limit = np.floor(0.06 * sides)
        tight = np.clip(np.rint(rng.normal(0, 0.03 * sides, size=(n_tight, 4))), -limit, limit)
        loose = np.rint(rng.normal(0, 0.2 * sides, size=(n_loose, 4)))
        boxes += [gt + tight, gt + loose]
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            corners = np.array([a.box, b.box], dtype=float)
            boxes.append(np.concatenate([corners[:, :2].min(0), corners[:, 2:].max(0)])[None])
    n_object = sum(len(b) for b in boxes)
    n_random = max(count - n_object, 0) + count // 10  # spare rows for duplicates
    scale = np.exp(rng.uniform(np.log(6), np.log(min(width, height)), size=n_random))
    ratio = np.exp(rng.uniform(-np.log(3), np.log(3), size=n_random))
    extent = np.stack([scale * np.sqrt(ratio), scale / np.sqrt(ratio)], axis=1)
    extent = np.minimum(np.maximum(np.rint(extent), 1), [width, height])
    corner = np.floor(rng.uniform(0, 1, size=(n_random, 2)) * ([width, height] - extent + 1))
    boxes.append(np.concatenate([corner, corner + extent - 1], axis=1))
    boxes = np.concatenate(boxes)
    boxes = np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1
    )
    boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)][: max(count, n_object)]  # object boxes come first: all kept
    return boxes[rng.permutation(len(boxes))]


def growth_boxes(obj: GeneratedObject) -> list[tuple[int, int, int, int]]:
    """Boxes that grow from a two-part object's head to the whole object: every edge a third
    and two thirds of the way from the head's box to the object's (about 0.5 and 0.7 of the
    object's area). Selective search proposes such boxes when it merges the head with the
    adjacent body region by region; they chain the part to the whole (head -> first: IoU
    ~0.6, first -> second ~0.7, second -> object ~0.7), the overlaps that OICR's and PCL's
    IoU >= 0.5 positives climb. None for an object with fewer than two visible parts."""
    if len(obj.parts) != 2:
        return []
    head, whole = np.array(obj.parts[1], dtype=float), np.array(obj.box, dtype=float)
    return [tuple(np.rint(head + t * (whole - head)).astype(int).tolist()) for t in GROWTH]
