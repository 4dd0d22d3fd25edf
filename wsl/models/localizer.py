"""The Localizer of Oquab et al. ("Is object localization for free?", CVPR 2015).

AlexNet conv1-conv5 (ImageNet-pretrained) → 3x3 conv(256) → ReLU → 1x1 conv(256) → ReLU → 1x1
conv(C) gives one score map of logits per class, stride 16; a global pooling turns each map into
an image logit, trained with BCE on image labels. The maps are the class heatmaps that boxes are
read from (``wsl.inference.heatmaps``). Inputs are ImageNet-normalized RGB, like AlexNet's.

**As a family** (:class:`~wsl.models.family.Family`): the loss ``bce`` is BCE of the image
logits against the image labels (classes ignored by ``data.difficult_labels=ignore`` have
weight 0), a mean over the batch (``loss_reduction`` ``mean``: under DDP and gradient
accumulation already the mean over the step's images). The detections are boxes read off every
class's heatmap (``heatmap_boxes``, :class:`~wsl.inference.heatmaps.HeatmapBoxConfig`), scored
with the image's class probabilities; :meth:`LocalizerAlexNet.predict` also gives the heatmaps
(the sigmoid of the score maps), from which the test scores the pointing game. CorLoc is
reported on the test split too (:attr:`~wsl.models.family.Family.corloc_on_test_split`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsl.inference.heatmaps import HeatmapBoxConfig, heatmap_boxes
from wsl.models.backbones import alexnet_features, spatial_size
from wsl.models.family import Family, Prediction, StepOutput
from wsl.models.pooling import GlobalPool
from wsl.structures.detections import Detections


class LocalizerOutput(NamedTuple):
    """What the Localizer gives for a batch of images."""

    score_maps: Tensor  # (N, C, h, w) logits per location: the class heatmaps
    logits: Tensor  # (N, C) image logits, the pooled maps (for BCE on image labels)


class LocalizerAlexNet(Family):
    """Score maps from AlexNet features, pooled into image logits (max pooling, as in the paper).

    ``weights``: the AlexNet weights, see ``wsl.models.backbones`` ("imagenet", "none" or a path).
    ``pooling``, ``lse_r``, ``topk``, ``map_dropout``: the global pooling, see
    ``wsl.models.pooling.GlobalPool`` (mode, r, k, drop).
    ``freeze_features``: keep the AlexNet layers fixed and train only the three new convolutions.
    ``heatmap_boxes``: keyword arguments of :class:`~wsl.inference.heatmaps.HeatmapBoxConfig`.
    """

    corloc_on_test_split = True

    def __init__(
        self,
        num_classes: int,
        weights: str | None = "imagenet",
        pooling: str = "max",
        lse_r: float = 5.0,
        topk: int | float = 0.1,
        map_dropout: float = 0.0,
        freeze_features: bool = False,
        heatmap_boxes: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.box_config = HeatmapBoxConfig(**(heatmap_boxes or {}))
        self.features = alexnet_features(weights)  # (N, 256, 31, 31) at 512x512
        self.features.requires_grad_(not freeze_features)
        self.head = nn.Sequential(
            nn.Conv2d(256, 256, kernel_size=3),  # no padding: 31x31 -> 29x29
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, kernel_size=1),  # one score map per class
        )
        for conv in self.head:
            if isinstance(conv, nn.Conv2d):
                nn.init.xavier_uniform_(conv.weight)
                nn.init.zeros_(conv.bias)
        self.pool = GlobalPool(pooling, r=lse_r, k=topk, drop=map_dropout)

    def forward(self, images: Tensor) -> LocalizerOutput:
        score_maps = self.head(self.features(images))
        return LocalizerOutput(score_maps, self.pool(score_maps))

    def score_map_size(self, input_size: int) -> int:
        """Side of the score maps for a square ``input_size`` input: 29 at 512, 21 at 384."""
        return spatial_size(self, input_size)  # modules are registered in forward order

    def step(self, batch: Mapping[str, Any], detect: bool = False) -> StepOutput:
        output = self(batch["image"])
        loss = F.binary_cross_entropy_with_logits(
            output.logits, batch["labels"], weight=batch["label_weights"]
        )
        scores = torch.sigmoid(output.logits.detach().float())
        detections = self.heatmap_detections(batch, output) if detect else None
        return StepOutput({"bce": loss}, scores, detections)

    def heatmap_detections(
        self, batch: Mapping[str, Any], output: LocalizerOutput
    ) -> list[Detections]:
        """Per image: boxes read off every class's heatmap (:attr:`box_config`), in 0-based
        inclusive pixels of the image on disk, scored with the image's class probabilities."""
        maps = output.score_maps.detach().float()
        scores = torch.sigmoid(output.logits.detach().float())
        detections = []
        for i, size in enumerate(batch["original_size"]):
            detections.append(heatmap_boxes(maps[i], size, scores[i], self.box_config))
        return detections

    def predict(self, batch: Mapping[str, Any]) -> Prediction:
        """The heatmaps' boxes of every class, best first, the class probabilities and the
        heatmaps (the sigmoid of the score maps), from one forward pass."""
        output = self(batch["image"].to(self.head[-1].weight.device))
        scores = torch.sigmoid(output.logits.float())
        heatmaps = list(torch.sigmoid(output.score_maps.float()))
        return Prediction(self.heatmap_detections(batch, output), scores, heatmaps)


class LocalizerAlexNetRobust(LocalizerAlexNet):
    """The Localizer trained so that its heatmaps cover whole objects, not their best part.

    Max pooling sends the gradient to one cell per map, so the maps learn the most discriminative
    part. Here, by default, two things spread it over the object:

    - ``pooling="lse"`` with ``lse_r=5``: a smooth max; every cell within about 1/5 logit of the
      top shares the gradient, while the score still follows the best region (unlike "avg", which
      a small object's background dilutes);
    - ``map_dropout=0.3``: in training, each cell is left out of the pooling with probability 0.3
      (CMU 16-824's dropout on the maps, but excluding cells rather than zeroing them, see
      ``wsl.models.pooling``), so when the peak is left out, the rest of the object must score.

    Any pooling ("max", "avg", "lse", "topk") can be chosen, to compare.
    """

    def __init__(
        self,
        num_classes: int,
        weights: str | None = "imagenet",
        pooling: str = "lse",
        lse_r: float = 5.0,
        topk: int | float = 0.1,
        map_dropout: float = 0.3,
        freeze_features: bool = False,
        heatmap_boxes: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            num_classes, weights, pooling, lse_r, topk, map_dropout, freeze_features,
            heatmap_boxes,
        )  # fmt: skip
