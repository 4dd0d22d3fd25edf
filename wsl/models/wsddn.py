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

Feature-map geometry: AlexNet and VGG16 have stride 16 (AlexNet: conv1 4, pool1 2, pool2 2;
VGG16: four pools of 2). AlexNet's map side is floor-rounded (512 px → 31 cells, not 32) and its
cell ``m`` is centred on pixel ``16 m + 15`` (VGG16: ``16 m + 7.5``); like Fast R-CNN, the ROI
pooling maps boxes with ``spatial_scale = 1/stride`` and ignores this offset (unless
``roi_offsets``). ``vgg16_dilated`` (OICR's and PCL's body, see ``wsl.models.backbones``) has
three pools of 2: stride 8, cell ``m`` centred on ``8 m + 3.5``, boxes mapped at ``1/8`` as
both codes (ppengtang/oicr ``models/VGG16/train.prototxt`` line 399 ``spatial_scale: 0.125``;
pcl.pytorch 0.4.0 ``lib/modeling/vgg16.py`` line 61). ``roi_op``:

- ``"pool"``: ``torchvision.ops.roi_pool`` (max), Fast R-CNN's rounding: ``round(x / 16)`` for both
  ends and a width of ``end - start + 1`` cells, i.e. inclusive boxes, passed as they are;
- ``"align"``: ``torchvision.ops.roi_align`` (bilinear average) with ``aligned=True``, which reads
  continuous coordinates (pixel ``i`` spans ``[i, i + 1)``), so inclusive boxes are passed as
  ``x1, y1, x2 + 1, y2 + 1``.

``roi_offsets`` (with ``"pool"``): boxes map to feature cells as the released code's ``getBatch``
(``wsddn_train.m``, ``wsddn_test.m``) maps them, with the receptive-field centre ``c`` of cell 0
and a shrink ``o1 = 9.5`` pixels: first cell ``floor((x1 - c + o1) / 16 + 0.5)``, last cell
``ceil((x2 - c - o1) / 16 - 0.5)`` (0-based pixels, cells and ``c``; the code writes the same in
1-based ones with ``o0 = c + 1``), then max-pooled by MatConvNet's ``ROIPooling``
(``transform = 1``), which bins cells exactly as ``roi_pool`` at ``spatial_scale = 1``. The
code's ``o0`` is 18 for VGG-F and 8.5 for VGG16; here ``c`` is computed from the backbone's
layers (:func:`receptive_field_centre`): 15 for torchvision's AlexNet (``o0 = 16``: its conv1 is
padded by 2, VGG-F's is not) and 7.5 for VGG16 (``o0 = 8.5``, the code's value).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from wsl.models.backbones import build_backbone
from wsl.structures.boxes import voc_iou

ROI_OPS = ("pool", "align")
EPS = 1e-6  # image scores are clamped into [EPS, 1 - EPS], so BCE's logs stay finite
ROI_SHRINK = 9.5  # pixels each box end moves inwards before mapping to cells (wsddn_train.m: o1)


class WSDDNOutput(NamedTuple):
    """What WSDDN gives for a batch of N images with R proposals in all."""

    image_scores: Tensor  # (N, C) per-image class scores in [EPS, 1 - EPS]
    region_scores: Tensor  # (R, C) classification * detection: the detection scores
    region_image: Tensor  # (R,) int64 index of each region's image; regions are in image order
    classification: Tensor  # (R, C) softmax over classes: each row sums to 1
    detection: Tensor  # (R, C) softmax over each image's regions: per image, each column sums to 1
    features: Tensor  # (R, 4096) fc7 after ReLU and dropout, the heads' input (spatial_regulariser)


class WSDDN(nn.Module):
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
    """

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
    ) -> None:
        super().__init__()
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
        with _float32(images.device.type):
            classification = self.fc8c(x.float()).softmax(dim=1)
            detection_logits = self.fc8d(x.float()) / self.detection_temperature
            detection = softmax_per_image(detection_logits, region_image, num_images)
            region_scores = classification * detection
        image_scores = region_scores.new_zeros(num_images, region_scores.shape[1])
        image_scores = image_scores.index_add(0, region_image, region_scores).clamp(EPS, 1 - EPS)
        return WSDDNOutput(image_scores, region_scores, region_image, classification, detection, x)


def _float32(device_type: str) -> AbstractContextManager[Any]:
    """A block outside autocast, where the device has autocast (the meta device has none)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


def pool_regions(
    feature_maps: Tensor,
    boxes: Tensor,
    region_image: Tensor,
    output_size: int,
    stride: int,
    op: str = "pool",
    centre: float | None = None,
) -> Tensor:
    """ROI-pools inclusive pixel ``boxes`` (R, 4) from ``feature_maps[region_image]``: (R, D, s, s).

    One ``roi_pool``/``roi_align`` call for the batch, with rows ``[image index, box]``; see the
    module docstring for the coordinates each op reads. ``centre``: the receptive-field centre
    of cell 0 in pixels (0-based); when given, boxes become cells with the released code's
    offsets (``"pool"`` only).
    """
    if centre is not None:
        if op != "pool":
            raise ValueError(f"receptive-field offsets need op='pool', got {op!r}")
        start = ((boxes[:, :2] - centre + ROI_SHRINK) / stride + 0.5).floor()
        end = ((boxes[:, 2:] - centre - ROI_SHRINK) / stride - 0.5).ceil()
        cells = torch.cat([start, end], dim=1)
        rois = torch.cat([region_image[:, None].to(boxes), cells], dim=1)
        return roi_pool(feature_maps, rois, output_size, spatial_scale=1.0)
    if op == "align":
        boxes = boxes + boxes.new_tensor([0, 0, 1, 1])  # inclusive ends -> continuous ends
    rois = torch.cat([region_image[:, None].to(boxes), boxes], dim=1)
    if op == "pool":
        return roi_pool(feature_maps, rois, output_size, spatial_scale=1 / stride)
    if op == "align":
        return roi_align(feature_maps, rois, output_size, spatial_scale=1 / stride, aligned=True)
    raise ValueError(f"unknown roi op {op!r}; choose one of {ROI_OPS}")


def receptive_field_centre(features: nn.Module) -> float:
    """Pixel (0-based) on which cell 0 of ``features``' output map is centred.

    Over the convolutions and max-pools in module order: ``centre += jump * ((k - 1) d / 2 - p)``
    and ``jump *= s`` (kernel ``k``, dilation ``d``, padding ``p``, stride ``s``). Torchvision's
    AlexNet: 15 (MatConvNet's 1-based ``o0`` = 16); VGG16: 7.5 (``o0`` = 8.5, as the code).
    """
    centre, jump = 0.0, 1
    for layer in features.modules():
        if isinstance(layer, nn.Conv2d | nn.MaxPool2d):
            k, s, p, d = (
                v if isinstance(v, int) else v[0]
                for v in (layer.kernel_size, layer.stride, layer.padding, layer.dilation)
            )
            centre += jump * ((k - 1) * d / 2 - p)
            jump *= s
    return centre


def softmax_per_image(logits: Tensor, region_image: Tensor, num_images: int) -> Tensor:
    """Softmax of ``logits`` (R, C) over the regions of each image, per class, vectorized.

    ``region_image`` (R,) holds each region's image index. Per image and class, the max logit is
    subtracted (a shift that leaves the softmax unchanged and keeps ``exp`` finite).
    """
    index = region_image[:, None].expand_as(logits)
    peak = logits.new_full((num_images, logits.shape[1]), -torch.inf)
    peak = peak.scatter_reduce(0, index, logits.detach(), "amax")
    exp = (logits - peak[region_image]).exp()
    total = exp.new_zeros(num_images, logits.shape[1]).index_add(0, region_image, exp)
    return exp / total[region_image]


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
