"""One image's region proposals (:class:`Proposals`) and whether boxes lie inside their image.

Boxes are ``float32`` ``x1, y1, x2, y2``, 0-based inclusive pixel coordinates of the image as
stored on disk (:mod:`wsl.structures.boxes`), whatever the source: a ``.mat`` file
(:mod:`wsl.data.proposal_mat`) or selective search (:mod:`wsl.data.selective_search`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Proposals:
    """The region proposals of one image."""

    boxes: np.ndarray  # (K, 4) float32 x1, y1, x2, y2, 0-based inclusive
    scores: np.ndarray | None = None  # (K,) float32, higher is better; None: file order is rank

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray | slice) -> Proposals:
        """The proposals at ``keep`` (indices, mask or slice), in that order."""
        return Proposals(self.boxes[keep], None if self.scores is None else self.scores[keep])


def inside_image(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which 0-based inclusive ``x1, y1, x2, y2`` boxes are ordered and inside the image."""
    x1, y1, x2, y2 = boxes.T
    return (x1 >= 0) & (x1 <= x2) & (x2 < width) & (y1 >= 0) & (y1 <= y2) & (y2 < height)
