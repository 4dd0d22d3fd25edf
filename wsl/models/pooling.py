"""Global pooling of class score maps (N, C, h, w) into image logits (N, C).

The pooling decides which locations of a map training sees: the gradient of an image score
reaches only the cells that the pooling weighs, so it shapes what the heatmaps cover.

- ``"max"``: the highest cell (Oquab et al., CVPR 2015). Only that cell gets gradient, so the maps
  learn the single most discriminative part (a face rather than the whole person).
- ``"avg"``: the mean of all cells. Every cell gets gradient, but a small object's score is
  diluted by the background around it.
- ``"lse"``: log-sum-exp, ``(1/r) log(mean(exp(r x)))`` (Pinheiro & Collobert, CVPR 2015), a smooth
  max: ``avg`` as ``r -> 0``, ``max`` as ``r -> inf``; cells get gradient ``softmax(r x)``, so
  every cell within about ``1/r`` logits of the top shares it. Computed as
  ``(logsumexp(r x) - log(h w)) / r``, which cannot overflow.
- ``"topk"``: the mean of the ``k`` highest cells (the positive term of WILDCAT, Durand et al.,
  CVPR 2017); ``k`` is a count (int) or a fraction of the ``h w`` cells (float in (0, 1),
  rounded, at least 1).

``drop`` (training only) leaves each cell (of each class and image) out of the pooling with that
probability, so training cannot rely on one location: when the top cell is dropped, the next best
cells get the gradient. Dropped cells are *excluded*, not zeroed as ``nn.Dropout`` would: a zero is
a logit of 0 (probability 0.5), which max pooling would pick over an absent class's negative
scores, and ``nn.Dropout``'s 1/(1-p) rescaling would inflate training scores over test scores.
A map whose cells are all dropped keeps them all. The score maps themselves are not changed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POOLINGS = ("max", "avg", "lse", "topk")


class GlobalPool(nn.Module):
    """Pools score maps (N, C, h, w) into logits (N, C) with ``mode`` (see the module docstring)."""

    def __init__(
        self, mode: str = "max", r: float = 5.0, k: int | float = 0.1, drop: float = 0.0
    ) -> None:
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"unknown pooling {mode!r}; choose one of {POOLINGS}")
        if r <= 0:
            raise ValueError(f"lse sharpness r must be positive, got {r}")
        if not (isinstance(k, int) and k >= 1) and not (isinstance(k, float) and 0 < k < 1):
            raise ValueError(f"topk k must be an int >= 1 or a fraction in (0, 1), got {k!r}")
        if not 0 <= drop < 1:
            raise ValueError(f"drop must be a probability in [0, 1), got {drop}")
        self.mode, self.r, self.k, self.drop = mode, float(r), k, float(drop)

    def forward(self, maps: Tensor) -> Tensor:
        x = maps.flatten(2)  # (N, C, h*w)
        keep = torch.ones_like(x, dtype=torch.bool)
        if self.training and self.drop > 0:
            keep = torch.rand_like(x) >= self.drop
            keep |= ~keep.any(-1, keepdim=True)  # a map with every cell dropped keeps them all
        count = keep.sum(-1).to(x.dtype)
        if self.mode == "avg":
            return x.where(keep, 0).sum(-1) / count
        x = x.masked_fill(~keep, -math.inf)
        if self.mode == "max":
            return x.amax(-1)
        if self.mode == "lse":
            return (torch.logsumexp(self.r * x, -1) - count.log()) / self.r
        top = x.topk(self._k(x.shape[-1]), -1).values  # dropped cells come last, as -inf
        kept = top > -math.inf
        return top.where(kept, 0).sum(-1) / kept.sum(-1)

    def _k(self, cells: int) -> int:
        """The number of cells "topk" averages in maps of ``cells`` cells."""
        k = self.k if isinstance(self.k, int) else max(1, round(self.k * cells))
        if k > cells:
            raise ValueError(f"topk k={self.k} exceeds the {cells} cells of each score map")
        return k

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, r={self.r}, k={self.k}, drop={self.drop}"
