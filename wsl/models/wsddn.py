"""WSDDN: Weakly Supervised Deep Detection Networks (Bilen & Vedaldi, CVPR 2016).

Backbone conv1-conv5 (no last max-pool) → ROI pooling of each proposal → pretrained fc6 → ReLU →
dropout → pretrained fc7 → ReLU → dropout → two new heads: ``fc8c`` scores each region over the
classes (softmax over classes, "what"), ``fc8d`` over the regions of its image (softmax over the
image's regions, per class, "where"). Their product is the region score; its sum over an image's
regions is the image score in [0, 1], trained with BCE on image labels. The region scores are the
detections. Reference: the authors' MatConvNet code, github.com/hbilen/WSDDN (``wsddn_init.m``,
``BiasSamples.m``, ``LossTopBoxSmoothProb.m``), which this follows where the paper is silent.

Proposals are 0-based inclusive ``x1, y1, x2, y2`` boxes in the pixels of the network input (the
resized image). A batch pads images with zeros at the bottom and right, so boxes stay valid.
Regions of all images are pooled in one call and concatenated in image order; the softmax over
regions is computed per image (segment-wise), so images of a batch never share it.

**As a family** (:class:`~wsl.models.family.Family`): a training batch's losses are ``bce``, the
per-image BCE of the image scores against the image labels, *summed* over the classes as the
MatConvNet original (``mil_class_reduction: sum``; ``mean``: averaged over them, as the
refinement methods' codes: pcl.pytorch ``lib/modeling/pcl_heads.py:84``, wetectron
``modeling/roi_heads/weak_head/loss.py:89``, Caffe OICR's ``multi_class_cross_entropy_loss_layer``)
and, with ``spatial_reg_weight``, the weighted ``spatial_reg``. The family's loss reduction is
``sum``: the objective is the per-image loss summed over the batch's images, so a batch of N
images makes the step N single-image steps would (to first order) and the original's batch of
one image and learning rate (1e-5) carry over to any batch size. BCE and the regulariser are
computed in float32 outside autocast (CUDA autocast refuses ``binary_cross_entropy``); a NaN
score gives a NaN loss (:func:`wsddn_loss`), which the training module skips and counts.

**Refinement** (``refinement``): a head on the fc7 region features chosen in YAML, e.g.
:class:`~wsl.models.refinement.RefinementHeads` (OICR, PCL) or
:class:`~wsl.models.mist.MISTHeads` (MIST, with box regression). It adds its losses to WSDDN's
(summed, as the authors' codes), and the detections are then made of its scores (and, if it
regresses boxes, its boxes) instead of WSDDN's region scores. The image scores of the
classification metrics stay WSDDN's: a stream's scores are per-region softmaxes, whose sum over
an image's regions is no probability.

**Detections** (:meth:`WSDDN.predict`): the region scores (and boxes) averaged over the
test-time views (``tta``, :class:`~wsl.inference.regions.TTAConfig`), then thresholded, NMS-ed
and cut to the top k (``inference``, :class:`~wsl.inference.regions.DetectionConfig`).
:meth:`WSDDN.detections_by_source` gives, with a refinement head, WSDDN's detections and the
last stream's side by side.

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import hydra
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsl.inference.regions import DetectionConfig, TTAConfig, region_detections, view_of_batch
from wsl.models.backbones import build_backbone
from wsl.models.family import Family, Prediction, StepOutput
from wsl.models.roi import (
    ROI_OPS,
    float32_block,
    pool_regions,
    receptive_field_centre,
    softmax_per_image,
)
from wsl.structures.boxes import Size, boxes_to_original, hflip_boxes, voc_iou
from wsl.structures.detections import Detections

EPS = 1e-6  # image scores are clamped into [EPS, 1 - EPS], so BCE's logs stay finite
MIL_CLASS_REDUCTIONS = ("sum", "mean")  # of the per-image BCE over the classes
MODEL_SOURCE, WSDDN_SOURCE = "model", "WSDDN"  # detections by the family's choice, by WSDDN's


class WSDDNOutput(NamedTuple):
    """What WSDDN gives for a batch of N images with R proposals in all."""

    image_scores: Tensor  # (N, C) per-image class scores in [EPS, 1 - EPS]
    region_scores: Tensor  # (R, C) classification * detection: the detection scores
    region_image: Tensor  # (R,) int64 index of each region's image; regions are in image order
    classification: Tensor  # (R, C) softmax over classes: each row sums to 1
    detection: Tensor  # (R, C) softmax over each image's regions: per image, each column sums to 1
    features: Tensor  # (R, 4096) fc7 after ReLU and dropout, the heads' input (spatial_regulariser)


class WSDDN(Family):
    """WSDDN on a torchvision backbone (see the module docstring).

    ``backbone``: "alexnet" (6x6 ROIs), "vgg16" (7x7 ROIs) or "vgg16_dilated" (VGG16 at stride 8,
    OICR's and PCL's); ``weights``: its ImageNet weights, "none" or a file, see
    ``wsl.models.backbones``. ``roi_op``: "pool" or "align".
    ``freeze_conv1``: keep the first convolution fixed (as Fast R-CNN; its filters are generic).
    ``freeze_blocks``: also keep the convolutions of the first N blocks fixed (a block ends at a
    max-pool: VGG16 conv1_x, conv2_x, ...; AlexNet conv1, conv2, conv3-5), as pcl.pytorch's
    ``VGG.FREEZE_AT`` (2, ``lib/core/config.py`` line 387; ``lib/modeling/vgg16.py`` lines
    65-68) and the Caffe OICR prototxt's ``lr_mult: 0`` on conv1_x and conv2_x
    (``models/VGG16/train.prototxt`` lines 20, 24, 45, 49, 81, 85, 106, 110). 0: none; the frozen
    layers are the union of both settings, so ``freeze_conv1`` keeps its meaning.
    ``dropout``: after fc6 and after fc7 (as ``wsddn_init.m``; torchvision's AlexNet has it before).
    ``use_proposal_scores``: the paper's "box sc." (with EdgeBoxes): the ROI-pooled features of a
    region are multiplied by ``1 + proposal_score_gain * score`` before fc6 (``BiasSamples.m``,
    gain 10), so that objectness favours a region from the start; ``forward`` then needs
    ``proposal_scores``, which are otherwise ignored.
    ``detection_temperature``: the region softmax reads ``logits / T``, as ``SoftMax2.m`` divides
    its input by ``temp``; the paper's softmax is ``T = 1``, the released code uses 2 for the
    region softmax (``softmaxTempDet`` in ``wsddn_init.m``) and 1 for the class softmax
    (``softmaxTempCls``), a flatter distribution over regions.
    ``roi_offsets``: map boxes to feature cells with the receptive-field offsets of the released
    code (see the module docstring; needs ``roi_op="pool"``).

    Under autocast (bf16), ``fc8c``, ``fc8d`` and both softmaxes run in float32: the region
    scores are products of two softmaxes, far below bf16's resolution near 1.

    The family's settings (see the module docstring): ``mil_class_reduction`` (``sum`` or
    ``mean``), ``spatial_reg_weight`` (0: off; the released code: 1e-4), ``refinement`` (a
    ``_target_`` config of a head taking ``in_features`` and ``num_classes``, or ``None``),
    ``inference`` and ``tta`` (keyword arguments of ``DetectionConfig`` and ``TTAConfig``).
    """

    needs_proposals = True
    detects_on_validation = True
    loss_reduction = "sum"

    def __init__(
        self,
        num_classes: int,
        backbone: str = "alexnet",
        weights: str | None = "imagenet",
        roi_op: str = "pool",
        freeze_conv1: bool = True,
        freeze_blocks: int = 0,
        dropout: float = 0.5,
        use_proposal_scores: bool = False,
        proposal_score_gain: float = 10.0,
        detection_temperature: float = 1.0,
        roi_offsets: bool = False,
        mil_class_reduction: str = "sum",
        spatial_reg_weight: float = 0.0,
        refinement: Mapping[str, Any] | None = None,
        inference: Mapping[str, Any] | None = None,
        tta: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if mil_class_reduction not in MIL_CLASS_REDUCTIONS:
            raise ValueError(
                f"model.net.mil_class_reduction must be one of {list(MIL_CLASS_REDUCTIONS)}: "
                f"{mil_class_reduction!r}"
            )
        if roi_op not in ROI_OPS:
            raise ValueError(f"unknown roi_op {roi_op!r}; choose one of {ROI_OPS}")
        if roi_offsets and roi_op != "pool":
            raise ValueError(
                f"model.net.roi_offsets=true maps boxes to whole cells for max pooling, as the "
                f"released code; it needs roi_op='pool', got roi_op={roi_op!r}"
            )
        if detection_temperature <= 0:
            raise ValueError(f"detection_temperature must be positive, got {detection_temperature}")
        parts = build_backbone(backbone, weights)
        if not 0 <= freeze_blocks <= len(parts.conv_blocks):
            raise ValueError(
                f"model.net.freeze_blocks must be between 0 and {len(parts.conv_blocks)} (the "
                f"convolution blocks of {backbone}), got {freeze_blocks}"
            )
        self.features = parts.features  # conv1 ... conv5 + ReLU, stride 16 (or 8)
        self.features[0].requires_grad_(not freeze_conv1)
        for block in parts.conv_blocks[:freeze_blocks]:
            for conv in block:
                conv.requires_grad_(False)
        self.roi_op, self.roi_size, self.stride = roi_op, parts.roi_size, parts.stride
        self.roi_centre = receptive_field_centre(self.features) if roi_offsets else None
        self.use_proposal_scores = use_proposal_scores
        self.proposal_score_gain = proposal_score_gain
        self.detection_temperature = detection_temperature
        self.fc6, self.fc7 = parts.fc6, parts.fc7  # pretrained
        self.dropout = nn.Dropout(dropout)
        self.fc8c = nn.Linear(parts.fc7.out_features, num_classes)  # classification stream
        self.fc8d = nn.Linear(parts.fc7.out_features, num_classes)  # detection stream
        for head in (self.fc8c, self.fc8d):  # as wsddn_init.m
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        self.mil_class_reduction = mil_class_reduction
        self.spatial_reg_weight = spatial_reg_weight
        self.refinement = (
            hydra.utils.instantiate(
                dict(refinement),
                in_features=parts.fc7.out_features,
                num_classes=num_classes,
                _convert_="all",
            )
            if refinement
            else None
        )
        self.detection_config = DetectionConfig(**(inference or {}))
        self.tta = TTAConfig(**(tta or {}))
        # WSDDN's region scores are products of two softmaxes, a fraction of the image score:
        # wsddn_test.m keeps a score above 1e-3 (summed over its 10 views); the streams' are
        # per-region class probabilities
        self.default_score_threshold = 1e-3 if self.refinement is None else 0.05

    def forward(
        self,
        images: Tensor,
        proposals: list[Tensor],
        proposal_scores: list[Tensor] | None = None,
    ) -> WSDDNOutput:
        """Scores ``proposals[i]`` (K_i, 4) of ``images[i]`` (N, 3, H, W), see WSDDNOutput."""
        _check_proposals(images, proposals, proposal_scores, self.use_proposal_scores)
        num_images, device = len(images), images.device
        boxes = torch.cat(proposals).to(images)
        counts = torch.tensor([len(p) for p in proposals], device=device)
        region_image = torch.arange(num_images, device=device)
        region_image = region_image.repeat_interleave(counts, output_size=len(boxes))  # no sync
        x = self.features(images)
        x = pool_regions(
            x, boxes, region_image, self.roi_size, self.stride, self.roi_op, self.roi_centre
        )
        if self.use_proposal_scores:
            assert proposal_scores is not None  # checked above
            scores = torch.cat(proposal_scores).to(x)
            x = x * (1 + self.proposal_score_gain * scores)[:, None, None, None]
        x = self.dropout(F.relu(self.fc6(x.flatten(1))))
        x = self.dropout(F.relu(self.fc7(x)))
        with float32_block(images.device.type):
            classification = self.fc8c(x.float()).softmax(dim=1)
            detection_logits = self.fc8d(x.float()) / self.detection_temperature
            detection = softmax_per_image(detection_logits, region_image, num_images)
            region_scores = classification * detection
        image_scores = region_scores.new_zeros(num_images, region_scores.shape[1])
        image_scores = image_scores.index_add(0, region_image, region_scores).clamp(EPS, 1 - EPS)
        return WSDDNOutput(image_scores, region_scores, region_image, classification, detection, x)

    # -- the family -------------------------------------------------------------------------

    def forward_batch(
        self, batch: Mapping[str, Any], images: Tensor | None = None,
        proposals: list[Tensor] | None = None,
    ) -> WSDDNOutput:  # fmt: skip
        """The network on ``batch`` (or on a view of it: its ``images`` and ``proposals``);
        proposal scores are passed only when the network uses them and every image has them."""
        device = self.fc8c.weight.device
        if images is None:
            images, proposals = (
                batch["image"].to(device),
                [p.to(device) for p in batch["proposals"]],
            )
        assert proposals is not None
        scores = batch.get("proposal_scores") if self.use_proposal_scores else None
        if scores is not None and any(s is None for s in scores):
            scores = None  # the network says what is missing
        return self(images, proposals, scores)

    def heads(self, output: WSDDNOutput) -> Any:
        """The refinement head's output on ``output``'s region features (``None`` without)."""
        return None if self.refinement is None else self.refinement(output.features)

    def losses(
        self, output: WSDDNOutput, heads: Any, batch: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """The named per-image losses (means over the batch's images, float32): ``bce``, the
        weighted ``spatial_reg`` (with ``spatial_reg_weight``) and the refinement head's."""
        device = output.image_scores.device
        labels = batch["labels"].to(device).float()
        with float32_block(device.type):
            bce = wsddn_loss(output.image_scores.float(), labels, batch["label_weights"].to(device))
            terms = {"bce": labels.shape[1] * bce if self.mil_class_reduction == "sum" else bce}
            boxes = torch.cat(batch["proposals"]).to(device).float()
            if self.spatial_reg_weight:
                regulariser = spatial_regulariser(
                    output.features.float(), output.region_scores.float(), boxes,
                    output.region_image, labels,
                )  # fmt: skip
                terms["spatial_reg"] = self.spatial_reg_weight * regulariser
            if heads is not None:
                assert self.refinement is not None
                terms.update(
                    self.refinement.losses(
                        heads, boxes, output.region_image, output.region_scores.float(), labels
                    )
                )
        return terms

    def step(self, batch: Mapping[str, Any], detect: bool = False) -> StepOutput:
        output = self.forward_batch(batch)
        heads = self.heads(output)
        detections = None
        if detect:
            with torch.no_grad():
                proposals = [p.to(output.features.device) for p in batch["proposals"]]
                scores, boxes = self._scores_and_boxes(output, heads, proposals, MODEL_SOURCE)
                sizes = batch["input_size"]
                detections = self._postprocess(
                    batch, scores, self._to_original(boxes, sizes, batch["original_size"], False), 1
                )
        return StepOutput(
            self.losses(output, heads, batch), output.image_scores.float(), detections
        )

    def _scores_and_boxes(
        self, output: WSDDNOutput, heads: Any, proposals: Sequence[Tensor], source: str
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Each image's region scores (K_i, C) and boxes ((K_i, 4), or (K_i, C, 4) for a head
        that regresses them; pixels of the view) by ``source``, in float32."""
        counts = [len(p) for p in proposals]
        if heads is None or source == WSDDN_SOURCE:
            return list(output.region_scores.float().split(counts)), list(proposals)
        assert self.refinement is not None
        stream = None if source == MODEL_SOURCE else int(source.rsplit(" ", 1)[-1]) - 1
        boxes = torch.cat(list(proposals)).float()
        regressed = self.refinement.boxes(heads, boxes, stream)
        scores = self.refinement.scores(heads, stream).float().split(counts)
        return list(scores), list(proposals if regressed is None else regressed.split(counts))

    @staticmethod
    def _to_original(
        boxes: Sequence[Tensor], sizes: Sequence[Size], original_sizes: Sequence[Size],
        flipped: bool,
    ) -> list[Tensor]:  # fmt: skip
        """Each image's boxes (K, 4) or (K, C, 4) in pixels of a view of size ``sizes[i]``
        (flipped or not) mapped to pixels of the image on disk; regressed boxes (K, C, 4) are
        clipped to it (wetectron's ``PostProcessor``: ``clip_to_image``)."""
        mapped = []
        for b, size, original in zip(boxes, sizes, original_sizes, strict=True):
            flat = b.reshape(-1, 4)
            if flipped:
                flat = hflip_boxes(flat, size[1])
            flat = boxes_to_original(flat, size, original)
            if b.ndim == 3:
                high = flat.new_tensor([original[1] - 1, original[0] - 1] * 2)
                flat = flat.clamp(min=0).minimum(high)
            mapped.append(flat.reshape(b.shape))
        return mapped

    def view_scores(
        self, batch: Mapping[str, Any], sources: Sequence[str] = (MODEL_SOURCE,)
    ) -> tuple[dict[str, tuple[list[Tensor], list[Tensor]]], Tensor]:
        """By source, each image's region scores and boxes (pixels of the image on disk), and
        WSDDN's image scores (N, C), in float32 and averaged over the test-time views
        (:attr:`tta`); regions are the batch's proposals, in their order."""
        totals: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
        image_total: Tensor | None = None
        views = self.tta.views()
        device = self.fc8c.weight.device
        for scale, flipped in views:
            images, proposals, sizes = view_of_batch(
                batch["image"].to(device), [p.to(device) for p in batch["proposals"]],
                batch["input_size"], batch["original_size"], scale, flipped, self.tta.max_size,
                resize=self.tta.resize,
            )  # fmt: skip
            output = self.forward_batch(batch, images, proposals)
            heads = self.heads(output)
            for source in sources:
                scores, boxes = self._scores_and_boxes(output, heads, proposals, source)
                boxes = self._to_original(boxes, sizes, batch["original_size"], flipped)
                if source in totals:
                    old_scores, old_boxes = totals[source]
                    scores = [a + b for a, b in zip(old_scores, scores, strict=True)]
                    boxes = [a + b for a, b in zip(old_boxes, boxes, strict=True)]
                totals[source] = (scores, boxes)
            image = output.image_scores.float()
            image_total = image if image_total is None else image_total + image
        assert image_total is not None  # at least one view
        n = len(views)
        averaged = {
            source: ([s / n for s in scores], [b / n for b in boxes])
            for source, (scores, boxes) in totals.items()
        }
        return averaged, image_total / n

    def _postprocess(
        self, batch: Mapping[str, Any], scores: Sequence[Tensor], boxes: Sequence[Tensor],
        num_views: int,
    ) -> list[Detections]:  # fmt: skip
        """Per image: its regions' ``boxes`` scored by ``scores`` (averaged over ``num_views``
        views), thresholded, NMS-ed and cut to the top k (:attr:`detection_config`)."""
        return [
            region_detections(b, s, self.detection_config, num_views)
            for b, s in zip(boxes, scores, strict=True)
        ]

    def predict(self, batch: Mapping[str, Any]) -> Prediction:
        by_source, image_scores = self.view_scores(batch)
        num_views = len(self.tta.views())
        return Prediction(
            self._postprocess(batch, *by_source[MODEL_SOURCE], num_views), image_scores
        )

    def score_sources(self) -> list[str]:
        """The names of the family's region-score sources: ``WSDDN``, with a refinement head
        ``stream 1`` ... ``stream K`` (each stream alone), and ``model`` (what
        :meth:`predict` ranks)."""
        streams = [] if self.refinement is None else range(1, self.refinement.num_streams + 1)
        return [WSDDN_SOURCE, *(f"stream {k}" for k in streams), MODEL_SOURCE]

    def detections_by_source(
        self, batch: Mapping[str, Any], sources: Sequence[str] | None = None
    ) -> dict[str, list[Detections]]:
        """Detections of the same images by each of ``sources`` (:meth:`score_sources`; a name
        ending in the stream number, as ``refinement stream 3``, is that stream), each with the
        test's views, NMS and threshold, from one forward pass per view. Default: with a
        refinement head WSDDN's and the last stream's, without one the model's."""
        if sources is None:
            if self.refinement is None:
                return super().detections_by_source(batch)
            sources = (WSDDN_SOURCE, f"refinement stream {self.refinement.num_streams}")
        by_source, _ = self.view_scores(batch, sources)
        views = len(self.tta.views())
        return {source: self._postprocess(batch, *by_source[source], views) for source in sources}


def wsddn_loss(image_scores: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """BCE of image scores (N, C) in (0, 1) against 0/1 ``labels`` (N, C), mean over N * C.

    ``weights`` (C,) or (N, C) weighs each term; weight 0 leaves a term out, as a label 0
    ("difficult only" in the VOC image sets) is left out by MatConvNet's ``vl_nnloss``. The
    MatConvNet code sums over classes (its batch is one image), i.e. C times this mean: scale
    the learning rate accordingly.

    A non-finite score (a diverged network) gives a NaN loss, for the caller to skip, instead of
    the error ``F.binary_cross_entropy`` raises on it (a device-side assert on CUDA): BCE reads
    such a score as 0.5.
    """
    finite = image_scores.isfinite()
    safe = image_scores.where(finite, 0.5)
    loss = F.binary_cross_entropy(safe, labels.to(image_scores), weight=weights)
    return loss.where(finite.all(), torch.nan)


def spatial_regulariser(
    features: Tensor,
    region_scores: Tensor,
    boxes: Tensor,
    region_image: Tensor,
    labels: Tensor,
    iou_threshold: float = 0.6,
    top_regions: int | None = 10,
) -> Tensor:
    """The paper's spatial regulariser, as ``LossTopBoxSmoothProb.m`` computes it.

    For each image ``n`` and each of its positive classes ``c`` (``labels[n, c] > 0``), take the
    image's region ``t`` that scores highest for ``c``; every other region ``r`` among the
    ``top_regions`` highest-scoring for ``c`` (the top one included; None: all) whose IoU with
    ``t`` (+1 pixel convention) exceeds ``iou_threshold`` adds ``0.5 s_rc^2 ||f_r - f_t||^2``,
    where ``s_rc`` is region ``r``'s own score for ``c`` (as the released code weighs it, not by
    the top region's score) and ``f`` are the ``features`` (fc7 after ReLU and dropout). Scores
    are constants, as in the code (no gradient reaches them). The sum over classes and regions
    is averaged over the N images, so a batch of one image (the code's) gives the code's value.
    The code weighs this loss by 1e-4 (``wsddn_train.m``).

    The gradient is the code's, not the value's: ``backward`` of ``LossTopBoxSmoothProb.m``
    gives region ``r`` the gradient ``s_rc (f_r - f_t)`` and the top region ``t`` minus their
    sum, the exact gradient of ``0.5 s_rc ||f_r - f_t||^2`` (score to the power 1), while its
    ``forward`` reports the value with ``s_rc^2``. The value is only displayed; the gradient is
    what trains the network, so the returned tensor carries the code's value and the code's
    gradient (``value + surrogate - surrogate.detach()``). One departure: where a region serves
    two positive classes of an image, the code's backward keeps the last class's gradient
    (assignment), here the classes' gradients add up.

    ``features`` (R, D), ``region_scores`` (R, C), ``boxes`` (R, 4) and ``region_image`` (R,) are
    concatenated over images in image order, as ``WSDDN.forward`` gives them; ``labels`` (N, C).
    """
    if region_image.numel() > 1 and bool((region_image[1:] < region_image[:-1]).any()):
        raise ValueError("regions must be grouped by image in image order, as WSDDN gives them")
    num_images = labels.shape[0]
    scores = region_scores.detach()
    counts = torch.bincount(region_image, minlength=num_images)
    starts = counts.cumsum(0) - counts
    slot = torch.arange(len(region_image), device=scores.device) - starts[region_image]
    padded = scores.new_full((num_images, int(counts.max()), scores.shape[1]), -torch.inf)
    padded[region_image, slot] = scores  # (N, K_max, C), -inf past an image's regions
    k = padded.shape[1] if top_regions is None else min(top_regions, padded.shape[1])
    ranked_scores, ranked_slots = padded.topk(k, dim=1)  # (N, k, C), best first
    image, cls = ((labels > 0) & (counts > 0)[:, None]).nonzero(as_tuple=True)  # (P,) pairs
    ranked = starts[image, None] + ranked_slots[image, :, cls]  # (P, k) region indices
    ranked_scores = ranked_scores[image, :, cls]
    top, others, exists = ranked[:, :1], ranked[:, 1:], ranked_scores[:, 1:].isfinite()
    others = others.where(exists, top)  # past an image's regions: a valid index, masked out
    near = exists & (voc_iou(boxes[top], boxes[others]) > iou_threshold)
    pair, rank = near.nonzero(as_tuple=True)
    weight = ranked_scores[:, 1:][pair, rank]
    distance = (features[others[pair, rank]] - features[top[pair, 0]]).pow(2).sum(dim=1)
    value = (0.5 * weight.pow(2) * distance.detach()).sum()
    surrogate = (0.5 * weight * distance).sum()  # its gradient is the code's backward
    return (value + surrogate - surrogate.detach()) / num_images


def _check_proposals(
    images: Tensor,
    proposals: list[Tensor],
    proposal_scores: list[Tensor] | None,
    use_proposal_scores: bool,
) -> None:
    """Raises, saying what is wrong, unless each image has a non-empty (K_i, 4) box tensor and,
    when the model uses them, a (K_i,) score tensor."""
    if len(proposals) != len(images):
        raise ValueError(f"got {len(proposals)} proposal tensors for {len(images)} images")
    for i, boxes in enumerate(proposals):
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
            raise ValueError(
                f"proposals of image {i} must be a non-empty (K, 4) tensor of x1, y1, x2, y2 "
                f"boxes, got shape {tuple(boxes.shape)}"
            )
    if not use_proposal_scores:
        return
    if proposal_scores is None:
        raise ValueError(
            "WSDDN(use_proposal_scores=True) needs proposal_scores: one (K_i,) tensor of "
            "objectness scores (e.g. EdgeBoxes) per image; pass them or set "
            "use_proposal_scores=False (selective search has no scores)"
        )
    if len(proposal_scores) != len(proposals):
        raise ValueError(
            f"got {len(proposal_scores)} proposal_scores tensors for {len(images)} images"
        )
    for i, (boxes, scores) in enumerate(zip(proposals, proposal_scores, strict=True)):
        if scores.shape != (len(boxes),):
            raise ValueError(
                f"proposal_scores of image {i} must have shape ({len(boxes)},), one per "
                f"proposal, got {tuple(scores.shape)}"
            )
