"""MIST's refinement head (Ren et al., CVPR 2020): K streams that classify and regress each region.

The head of :class:`~wsl.models.wsddn.WSDDN`'s ``refinement`` (``conf/model/mist.yaml``), as
NVlabs/wetectron ``wetectron/modeling/roi_heads/weak_head/roi_weak_predictors.py``
``MISTPredictor`` (lines 112-174): each of the ``num_streams`` (3) streams is a ``Linear`` to
C + 1 logits (background first) and a ``Linear`` to ``(C + 1) * 4`` class-specific box deltas,
on WSDDN's fc7 region features; weights normal with std 0.001, biases 0.

**Losses** (``weak_head/loss.py`` ``RoIRegLoss``, lines 248-297): stream 0 learns from WSDDN's
region scores, stream k from the softmax of stream k - 1 (background dropped, detached), each
with its own pseudo boxes and regression targets (:func:`~wsl.pseudo_labels.mist.mist_targets`:
the top 15 % per class, IoU rule 0.2, foreground at 0.5) and its weighted cross-entropy and
smooth-L1 (:func:`~wsl.pseudo_labels.mist.mist_loss`); both of stream 0's are multiplied by 3.
Named ``refine_loss_<k>`` and ``box_loss_<k>``, each the mean over the batch's images (wetectron
trains on one image per GPU), summed with WSDDN's MIL loss by the training module.

**Test** (``REGRESS_HEUR`` "AVG", ``weak_head.py`` lines 116-119): the region scores are the mean
of the streams' softmax, background dropped; the boxes are the mean of the streams' raw deltas,
decoded once on the proposals with wetectron's ``BoxCoder(10, 10, 5, 5)``
(:func:`~wsl.structures.box_coder.decode_deltas`); WSDDN clips them to the image, averages them
over the test-time views (``engine/bbox_aug.py``) and runs the per-class NMS.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from wsl.models.refinement import refined_region_scores
from wsl.models.roi import float32_block
from wsl.pseudo_labels.mist import (
    FIRST_STREAM_WEIGHT,
    PSEUDO_IOU_THRESHOLD,
    TOP_PORTION,
    mist_loss,
    mist_targets,
)
from wsl.pseudo_labels.oicr import FG_THRESHOLD
from wsl.structures.box_coder import decode_deltas

INIT_STD = 0.001  # MISTPredictor: nn.init.normal_(std=0.001) on both layers


class MISTOutput(NamedTuple):
    """The K streams' outputs for R regions."""

    logits: list[Tensor]  # (R, C + 1) each, background first
    probs: list[Tensor]  # (R, C + 1) each, their softmax
    deltas: list[Tensor]  # (R, (C + 1) * 4) each, class j's in columns 4j..4j+3


class MISTHeads(nn.Module):
    """MIST's ``num_streams`` classify-and-regress streams (see the module docstring).

    Args:
        in_features: the region features' size (WSDDN's fc7).
        num_classes: C.
        num_streams: K (wetectron: 3).
        top_portion: the share of proposals ranked per class (``OICR_P`` 0.15).
        iou_threshold: a top box overlapping a higher-ranked one by this IoU or more is no
            pseudo box (``mist_layer``'s 0.2).
        fg_threshold: a proposal below this IoU with its pseudo box is background (0.5).
        first_stream_weight: the factor of stream 0's two losses (``RoIRegLoss``: 3).
        lr_mult: learning-rate factor of the streams' weights (wetectron: 1).
        bias_lr_mult: learning-rate factor of the streams' biases (wetectron's ``BIAS_LR_FACTOR``
            2 on every bias, ``configs/voc/V_16_voc07.yaml``, set by ``experiment=mist``).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_streams: int = 3,
        top_portion: float = TOP_PORTION,
        iou_threshold: float = PSEUDO_IOU_THRESHOLD,
        fg_threshold: float = FG_THRESHOLD,
        first_stream_weight: float = FIRST_STREAM_WEIGHT,
        lr_mult: float = 1.0,
        bias_lr_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if num_streams < 1:
            raise ValueError(f"num_streams must be at least 1, got {num_streams}")
        if not 0 < top_portion <= 1:
            raise ValueError(f"top_portion must be in (0, 1], got {top_portion}")
        self.num_classes, self.num_streams = num_classes, num_streams
        self.top_portion, self.iou_threshold = top_portion, iou_threshold
        self.fg_threshold, self.first_stream_weight = fg_threshold, first_stream_weight
        self.lr_mult, self.bias_lr_mult = lr_mult, bias_lr_mult
        self.classifiers = nn.ModuleList(
            nn.Linear(in_features, num_classes + 1) for _ in range(num_streams)
        )
        self.regressors = nn.ModuleList(
            nn.Linear(in_features, (num_classes + 1) * 4) for _ in range(num_streams)
        )
        for layer in (*self.classifiers, *self.regressors):
            nn.init.normal_(layer.weight, std=INIT_STD)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> MISTOutput:
        """Each stream's logits, softmax and deltas for ``features`` (R, in_features), float32."""
        with float32_block(features.device.type):
            x = features.float()
            logits = [classifier(x) for classifier in self.classifiers]
            deltas = [regressor(x) for regressor in self.regressors]
            return MISTOutput(logits, [z.softmax(dim=1) for z in logits], deltas)

    def losses(
        self, output: MISTOutput, boxes: Tensor, region_image: Tensor, region_scores: Tensor,
        labels: Tensor,
    ) -> dict[str, Tensor]:  # fmt: skip
        """``refine_loss_<k>`` and ``box_loss_<k>`` of each stream, means over the batch's
        images (float32). ``boxes`` (R, 4), ``region_image`` (R,), ``region_scores`` (R, C): the
        proposals and WSDDN's output; ``labels`` (N, C)."""
        counts = torch.bincount(region_image, minlength=len(labels)).tolist()
        previous = [region_scores, *(p[:, 1:] for p in output.probs[:-1])]
        terms: dict[str, Tensor] = {}
        with float32_block(boxes.device.type):
            for k, (prev, logits, deltas) in enumerate(
                zip(previous, output.logits, output.deltas, strict=True)
            ):
                per_image = []
                for b, s, z, d, y in zip(
                    boxes.split(counts), prev.split(counts), logits.split(counts),
                    deltas.split(counts), labels, strict=True,
                ):  # fmt: skip
                    targets = mist_targets(
                        b, s.detach(), y, self.top_portion, self.iou_threshold, self.fg_threshold
                    )
                    per_image.append(mist_loss(z, d, b, targets))
                weight = self.first_stream_weight if k == 0 else 1.0
                terms[f"refine_loss_{k}"] = weight * torch.stack([c for c, _ in per_image]).mean()
                terms[f"box_loss_{k}"] = weight * torch.stack([r for _, r in per_image]).mean()
        return terms

    def scores(self, output: MISTOutput, stream: int | None = None) -> Tensor:
        """Test-time region scores (R, C): the mean of the streams' softmax (or stream
        ``stream``'s alone), background dropped, as OICR's and PCL's
        (:func:`~wsl.models.refinement.refined_region_scores`)."""
        return refined_region_scores(output.probs if stream is None else [output.probs[stream]])

    def boxes(self, output: MISTOutput, boxes: Tensor, stream: int | None = None) -> Tensor:
        """Regressed boxes (R, C, 4) of every class: the mean of the streams' deltas (or stream
        ``stream``'s) decoded on the proposals ``boxes`` (R, 4), background dropped."""
        chosen = output.deltas if stream is None else [output.deltas[stream]]
        deltas = torch.stack(chosen).mean(dim=0)
        decoded = decode_deltas(deltas, boxes.to(deltas))
        return decoded.reshape(len(boxes), self.num_classes + 1, 4)[:, 1:]
