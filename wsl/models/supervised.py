"""A fully supervised detector, the second stage: Fast R-CNN or Faster R-CNN on pseudo boxes.

The weak detector's boxes on the training split become ground truth (``wsl.pseudo_labels``,
``data.pseudo_labels``) and a fully supervised detector trained on them is the final model, as
OICR, PCL and their successors retrain "+FRCNN". This family is torchvision's detection parts
(``torchvision.models.detection``) on the trunk the weak model used (``wsl.models.backbones``):

- ``mode="fast_rcnn"`` (Girshick, ICCV 2015): no RPN. The batch's proposals (selective search,
  as the weak model's; ``needs_proposals``) go straight to torchvision's ``RoIHeads``, the
  protocol of the papers (the wetectron maintainer's advice, NVlabs/wetectron issue #56: a
  Faster R-CNN "might learn very bad proposals" from pseudo boxes; the OICR author's code for
  it is a fork of Fast R-CNN, wetectron issue #53).
- ``mode="faster_rcnn"`` (Ren et al., NeurIPS 2015): torchvision's ``RegionProposalNetwork``
  (``RPNHead``, anchors of ``AnchorGenerator``) makes the proposals from the same feature map.

Both put the backbone's pretrained fc6 and fc7 (ReLU and dropout after each, as Fast R-CNN's
VGG16 ``train.prototxt``) behind the region pooling, and a ``FastRCNNPredictor`` (``C + 1``
scores, torchvision's label 0 being the background, and per-class box deltas) on top.

**torchvision's transform is bypassed.** ``GeneralizedRCNN.forward`` would resize and normalize
the images again with its ``GeneralizedRCNNTransform``; wsl's data pipeline has already done
both. So the parts are called one by one, as ``GeneralizedRCNN.forward`` calls them, on the
batch as it is: ``backbone`` on ``batch["image"]`` (zero-padded at the bottom and right),
image sizes ``batch["input_size"]`` (each image's unpadded size, to which boxes are clipped),
the RPN's steps (``RegionProposalNetwork.forward``'s: head, anchors, decode,
``filter_proposals``, ``assign_targets_to_anchors``, ``compute_loss``) and the ``RoIHeads``'
(``select_training_samples``, pooling, box head, predictor, ``fastrcnn_loss``,
``postprocess_detections``). Calling them here also gives the losses in eval mode (the
validation loss), which torchvision's ``forward`` gives only in training mode.

**Coordinates.** Boxes in wsl are 0-based inclusive pixels; torchvision's are continuous
(exclusive end): ground truth and proposals enter with ``+1`` on ``x2, y2``
(:func:`~wsl.structures.boxes.inclusive_to_continuous`), detections leave with ``-1`` and are
mapped from the network input to the image on disk
(:func:`~wsl.structures.boxes.boxes_to_original`), clipped to it. Training targets are
``batch["gt_boxes"]`` (input pixels) and ``batch["gt_classes"] + 1``; ``difficult`` objects
are left out unless ``train_on_difficult`` (py-faster-rcnn's ``pascal_voc.py``,
``use_diff=False``). An image without a box is all background (torchvision's empty targets).

**Region pooling** (``roi_op``): one feature map at the backbone's known stride, pooled by
:func:`wsl.models.roi.pool_regions` (``roi_pool`` with Fast R-CNN's rounding of inclusive boxes,
or ``roi_align(aligned=True)``), the same pooling as WSDDN's, instead of ``MultiScaleRoIAlign``,
which infers the scale from the map and image sizes (rounded to a power of 2) and only aligns.
The anchors, too, are laid at the backbone's stride: torchvision's ``AnchorGenerator`` takes
``image size // map size``, 21 instead of 16 for AlexNet's floor-rounded 3-cell map of a
64-pixel image.

**Sampling** (``RoIHeads``): per image ``box_batch_size_per_image`` regions, at most
``box_positive_fraction`` of them foreground (IoU >= ``fg_iou_thresh`` with a box; the boxes
themselves join the proposals, as Fast R-CNN's roidb), background below ``bg_iou_thresh``
and, with ``bg_iou_low`` > 0, at least that (Fast R-CNN's ``BG_THRESH_LO`` 0.1: a region
touching no box is neither; torchvision has no such bound, ``bg_iou_low=0``). Box deltas are
encoded with weights (10, 10, 5, 5), Fast R-CNN's ``BBOX_NORMALIZE_STDS`` (0.1, 0.1, 0.2, 0.2).

**As a family** (:class:`~wsl.models.family.Family`): :meth:`SupervisedDetector.step` gives
torchvision's ``loss_dict`` names, ``loss_classifier`` and ``loss_box_reg`` (and, with the RPN,
``loss_objectness`` and ``loss_rpn_box_reg``), each a mean over the sampled regions (anchors) of
the batch: ``loss_reduction`` is ``mean``. **Image scores** (for the classification metrics):
per class, the highest probability the classifier gives a region of the image, background left
out; that is the score of the image's best detection of the class whenever it has one (NMS
keeps the best box of a class, and boxes are scored by their region's probability). Outside
training (validation, test) the regions are all the image's proposals, as ``predict`` scores
them; in training they are the regions the loss sampled (ground-truth boxes among them), from
the same forward pass, so ``train/cls_mAP`` is a free, optimistic monitor. **Detections**:
torchvision's ``postprocess_detections`` (regressed boxes clipped to the image, scores above
``score_thresh``, per-class NMS at ``nms_thresh``, the best ``detections_per_img``), one view
(no test-time augmentation).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)
from torchvision.ops import box_iou

from wsl.models.backbones import build_backbone
from wsl.models.family import Family, Prediction, StepOutput
from wsl.models.roi import ROI_OPS, float32_block, pool_regions
from wsl.structures.boxes import (
    Size,
    boxes_to_original,
    continuous_to_inclusive,
    inclusive_to_continuous,
)
from wsl.structures.detections import Detections

MODES = ("fast_rcnn", "faster_rcnn")
FEATURE_MAP = "0"  # the one feature map's name, as GeneralizedRCNN names a backbone's tensor


class StrideAnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` with the anchors laid at a known ``stride`` (see the
    module docstring) instead of ``image size // map size``."""

    def __init__(self, sizes: Sequence[int], aspect_ratios: Sequence[float], stride: int) -> None:
        super().__init__((tuple(sizes),), (tuple(aspect_ratios),))
        self.stride = stride

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        grid_sizes = [feature_map.shape[-2:] for feature_map in feature_maps]
        device = feature_maps[0].device
        stride = torch.tensor(self.stride, dtype=torch.int64, device=device)
        self.set_cell_anchors(torch.float32, device)  # not bf16: pixels up to 1000 need float32
        anchors = torch.cat(self.grid_anchors(grid_sizes, [[stride, stride]] * len(grid_sizes)))
        return [anchors] * len(image_list.image_sizes)


class RegionPool(nn.Module):
    """``RoIHeads.box_roi_pool`` for one feature map at ``stride``: continuous boxes pooled
    by :func:`wsl.models.roi.pool_regions` (which reads inclusive ones) into
    ``output_size`` x ``output_size`` grids; called as ``MultiScaleRoIAlign`` is."""

    def __init__(self, output_size: int, stride: int, op: str) -> None:
        super().__init__()
        self.output_size, self.stride, self.op = output_size, stride, op

    def forward(
        self, features: Mapping[str, Tensor], proposals: list[Tensor], image_shapes: list[Size]
    ) -> Tensor:
        boxes = torch.cat(proposals)
        counts = torch.tensor([len(p) for p in proposals], device=boxes.device)
        region_image = torch.arange(len(proposals), device=boxes.device)
        region_image = region_image.repeat_interleave(counts, output_size=len(boxes))
        # float32, as torchvision's CUDA autocast runs roi_pool / roi_align (its CPU has none)
        return pool_regions(
            features[FEATURE_MAP].float(), continuous_to_inclusive(boxes), region_image,
            self.output_size, self.stride, self.op,
        )  # fmt: skip


class FCHead(nn.Module):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout on the flattened pooled grids (Fast
    R-CNN's VGG16 ``train.prototxt``: relu6, drop6, relu7, drop7, ratio 0.5)."""

    def __init__(self, fc6: nn.Linear, fc7: nn.Linear, dropout: float) -> None:
        super().__init__()
        self.fc6, self.fc7 = fc6, fc7
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(F.relu(self.fc6(x.flatten(1))))
        return self.dropout(F.relu(self.fc7(x)))


class BoxHeads(RoIHeads):
    """torchvision's ``RoIHeads`` with Fast R-CNN's lower background bound: a proposal whose
    IoU with every box of its image is below ``bg_iou_low`` is not sampled (label -1); 0
    leaves torchvision's rule (every proposal below ``bg_iou_thresh`` is background). An image
    without boxes stays all background."""

    def __init__(self, *args: Any, bg_iou_low: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bg_iou_low = bg_iou_low

    def assign_targets_to_proposals(
        self, proposals: list[Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        matched_idxs, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        if self.bg_iou_low > 0:
            for boxes, gt, image_labels in zip(proposals, gt_boxes, labels, strict=True):
                if gt.numel():
                    image_labels[box_iou(gt, boxes).amax(dim=0) < self.bg_iou_low] = -1
        return matched_idxs, labels


class SupervisedDetector(Family):
    """Fast R-CNN or Faster R-CNN of torchvision on a wsl backbone (see the module docstring).

    ``mode``: ``fast_rcnn`` (the batch's proposals) or ``faster_rcnn`` (an RPN).
    ``backbone``, ``weights``, ``freeze_conv1``, ``freeze_blocks``: as WSDDN's
    (``wsl.models.backbones``; "alexnet", "vgg16", "vgg16_dilated"; weights "imagenet",
    "none" or a torchvision state-dict file; Fast R-CNN's VGG16 keeps conv1_x and conv2_x
    fixed: ``freeze_blocks=2``). ``dropout``: after fc6 and fc7. ``roi_op``: "pool" (Fast
    R-CNN's RoIPool) or "align"; ``roi_output_size``: the pooled grid, the one the backbone's
    fc6 reads (6 AlexNet, 7 VGG16; ``None``: that one).
    Sampling of the box heads: ``box_batch_size_per_image``, ``box_positive_fraction``,
    ``fg_iou_thresh``, ``bg_iou_thresh``, ``bg_iou_low``; ``train_on_difficult``: keep
    ``difficult`` boxes as targets.
    The RPN (``faster_rcnn`` only): anchors of ``anchor_sizes`` (pixels) x ``aspect_ratios``
    at every cell; anchors with IoU >= ``rpn_fg_iou_thresh`` are objects, below
    ``rpn_bg_iou_thresh`` background, ``rpn_batch_size_per_image`` sampled per image with at
    most ``rpn_positive_fraction`` objects; proposals: the best ``rpn_pre_nms_top_n_*`` by
    objectness, NMS at ``rpn_nms_thresh``, the best ``rpn_post_nms_top_n_*`` kept (``train``
    in training mode, ``test`` otherwise).
    Detections: ``score_thresh``, ``nms_thresh`` (per class, IoU above it suppressed),
    ``detections_per_img``.
    """

    detects_on_validation = True  # val/det_mAP in both modes
    loss_reduction = "mean"
    default_score_threshold = 0.05

    def __init__(
        self,
        num_classes: int,
        mode: str = "fast_rcnn",
        backbone: str = "vgg16",
        weights: str | None = "imagenet",
        freeze_conv1: bool = True,
        freeze_blocks: int = 0,
        dropout: float = 0.5,
        roi_op: str = "pool",
        roi_output_size: int | None = None,
        box_batch_size_per_image: int = 64,
        box_positive_fraction: float = 0.25,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        bg_iou_low: float = 0.0,
        train_on_difficult: bool = False,
        anchor_sizes: Sequence[int] = (128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_pre_nms_top_n_train: int = 12000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 6000,
        rpn_post_nms_top_n_test: int = 300,
        rpn_nms_thresh: float = 0.7,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"model.net.mode must be one of {list(MODES)}, got {mode!r}")
        if roi_op not in ROI_OPS:
            raise ValueError(f"model.net.roi_op must be one of {list(ROI_OPS)}, got {roi_op!r}")
        if not 0 <= bg_iou_low <= bg_iou_thresh:
            raise ValueError(
                f"model.net.bg_iou_low ({bg_iou_low}) must be between 0 and bg_iou_thresh "
                f"({bg_iou_thresh}): background regions have IoU in [bg_iou_low, bg_iou_thresh)"
            )
        parts = build_backbone(backbone, weights)
        if roi_output_size is not None and roi_output_size != parts.roi_size:
            raise ValueError(
                f"model.net.roi_output_size={roi_output_size}, but {backbone}'s pretrained fc6 "
                f"reads a {parts.roi_size}x{parts.roi_size} grid: set it to {parts.roi_size} "
                "or null"
            )
        if not 0 <= freeze_blocks <= len(parts.conv_blocks):
            raise ValueError(
                f"model.net.freeze_blocks must be between 0 and {len(parts.conv_blocks)} (the "
                f"convolution blocks of {backbone}), got {freeze_blocks}"
            )
        self.mode = mode
        self.needs_proposals = mode == "fast_rcnn"
        self.train_on_difficult = train_on_difficult
        self.backbone = parts.features  # conv1 ... conv5 + ReLU, stride 16 (or 8)
        self.backbone[0].requires_grad_(not freeze_conv1)
        for block in parts.conv_blocks[:freeze_blocks]:
            for conv in block:
                conv.requires_grad_(False)
        self.rpn: RegionProposalNetwork | None = None
        if mode == "faster_rcnn":
            anchors = StrideAnchorGenerator(anchor_sizes, aspect_ratios, parts.stride)
            self.rpn = RegionProposalNetwork(
                anchors,
                RPNHead(parts.channels, anchors.num_anchors_per_location()[0]),
                fg_iou_thresh=rpn_fg_iou_thresh,
                bg_iou_thresh=rpn_bg_iou_thresh,
                batch_size_per_image=rpn_batch_size_per_image,
                positive_fraction=rpn_positive_fraction,
                pre_nms_top_n={"training": rpn_pre_nms_top_n_train,
                               "testing": rpn_pre_nms_top_n_test},
                post_nms_top_n={"training": rpn_post_nms_top_n_train,
                                "testing": rpn_post_nms_top_n_test},
                nms_thresh=rpn_nms_thresh,
            )  # fmt: skip
        predictor = FastRCNNPredictor(parts.fc7.out_features, num_classes + 1)
        for layer, std in ((predictor.cls_score, 0.01), (predictor.bbox_pred, 0.001)):
            nn.init.normal_(layer.weight, std=std)  # Fast R-CNN's train.prototxt fillers
            nn.init.zeros_(layer.bias)
        self.roi_heads = BoxHeads(
            RegionPool(parts.roi_size, parts.stride, roi_op),
            FCHead(parts.fc6, parts.fc7, dropout),
            predictor,
            fg_iou_thresh=fg_iou_thresh,
            bg_iou_thresh=bg_iou_thresh,
            batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction,
            bbox_reg_weights=None,  # torchvision's (10, 10, 5, 5)
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            bg_iou_low=bg_iou_low,
        )

    # -- the parts, called as GeneralizedRCNN.forward calls them ------------------------------

    def _images(self, batch: Mapping[str, Any]) -> tuple[Tensor, list[Size]]:
        """The padded images on the model's device and each image's unpadded (H, W)."""
        device = self.roi_heads.box_predictor.cls_score.weight.device
        sizes = [(int(h), int(w)) for h, w in batch["input_size"]]
        return batch["image"].to(device), sizes

    def _targets(self, batch: Mapping[str, Any], device: torch.device) -> list[dict[str, Tensor]]:
        """Each image's ground truth as torchvision reads it: continuous ``boxes`` (G, 4) in
        input pixels and ``labels`` (G,) from 1 (0 is the background)."""
        difficult = batch.get("gt_difficult") or [None] * len(batch["gt_boxes"])
        targets = []
        for i, (boxes, classes, hard) in enumerate(
            zip(batch["gt_boxes"], batch["gt_classes"], difficult, strict=True)
        ):
            boxes = torch.as_tensor(boxes).float().reshape(-1, 4)
            classes = torch.as_tensor(classes).long().reshape(-1)
            if hard is not None and not self.train_on_difficult:
                easy = ~torch.as_tensor(hard, dtype=torch.bool).reshape(-1)
                boxes, classes = boxes[easy], classes[easy]
            if bool((boxes[:, 2:] < boxes[:, :2]).any()):
                name = batch["image_id"][i] if "image_id" in batch else f"number {i}"
                raise ValueError(
                    f"image {name} has a ground-truth box with x2 < x1 or y2 < y1 (0-based "
                    f"inclusive pixels): {boxes.tolist()}; fix its annotation or pseudo labels"
                )
            labels = (classes + 1).to(device)  # torchvision's label 0 is the background
            targets.append({"boxes": inclusive_to_continuous(boxes).to(device), "labels": labels})
        return targets

    def _features(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict([(FEATURE_MAP, self.backbone(images))])

    def _proposals(
        self, batch: Mapping[str, Any], images: Tensor, features: OrderedDict[str, Tensor],
        sizes: list[Size], targets: list[dict[str, Tensor]] | None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:  # fmt: skip
        """Each image's continuous proposals in input pixels and, given ``targets`` with an
        RPN, its losses: the batch's proposals (``fast_rcnn``) or the RPN's."""
        if self.rpn is None:
            proposals = batch["proposals"]
            if len(proposals) != len(images):
                raise ValueError(f"got {len(proposals)} proposal tensors for {len(images)} images")
            for i, boxes in enumerate(proposals):
                if boxes.ndim != 2 or boxes.shape[1] != 4:
                    raise ValueError(
                        f"proposals of image {i} must be a (K, 4) tensor of x1, y1, x2, y2 "
                        f"boxes, got shape {tuple(boxes.shape)}"
                    )
            return [inclusive_to_continuous(p.to(images.device).float()) for p in proposals], {}
        return self._rpn(images, features, sizes, targets)

    def _rpn(
        self, images: Tensor, features: OrderedDict[str, Tensor], sizes: list[Size],
        targets: list[dict[str, Tensor]] | None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:  # fmt: skip
        """``RegionProposalNetwork.forward``'s steps, with the losses whenever ``targets`` are
        given (its ``forward`` gives them in training mode only)."""
        rpn = self.rpn
        assert rpn is not None
        maps = list(features.values())
        objectness, deltas = rpn.head(maps)
        anchors = rpn.anchor_generator(ImageList(images, sizes), maps)
        anchors_per_level = [o[0].numel() for o in objectness]  # A * H * W per map
        # in float32 (under bf16 autocast too): the boxes decoded from them are pixels
        objectness, deltas = concat_box_prediction_layers(
            [o.float() for o in objectness], [d.float() for d in deltas]
        )
        # no gradient through the proposals, as torchvision and Faster R-CNN
        proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
        boxes, _ = rpn.filter_proposals(proposals, objectness, sizes, anchors_per_level)
        if targets is None:
            return boxes, {}
        labels, matched_boxes = rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = rpn.box_coder.encode(matched_boxes, anchors)
        loss_objectness, loss_rpn_box_reg = rpn.compute_loss(
            objectness, deltas, labels, regression_targets
        )
        return boxes, {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}

    def _box_outputs(
        self, features: OrderedDict[str, Tensor], regions: list[Tensor], sizes: list[Size]
    ) -> tuple[Tensor, Tensor]:
        """Class logits (R, C + 1) and box deltas (R, 4 (C + 1)) of the regions of all images,
        in image order; the predictor runs in float32 (outside autocast), as WSDDN's heads."""
        heads = self.roi_heads
        pooled = heads.box_roi_pool(features, regions, sizes)
        region_features = heads.box_head(pooled)
        with float32_block(region_features.device.type):
            return heads.box_predictor(region_features.float())

    @staticmethod
    def _image_scores(logits: Tensor, regions: Sequence[Tensor]) -> Tensor:
        """Per image and class, the highest class probability of its regions (N, C); 0 for an
        image without regions."""
        probabilities = logits.detach().float().softmax(dim=1)[:, 1:]
        counts = torch.tensor([len(r) for r in regions], device=logits.device)
        region_image = torch.arange(len(regions), device=logits.device)
        region_image = region_image.repeat_interleave(counts, output_size=len(logits))
        index = region_image[:, None].expand_as(probabilities)
        scores = probabilities.new_zeros(len(regions), probabilities.shape[1])
        return scores.scatter_reduce(0, index, probabilities, "amax")

    def _detections(
        self, logits: Tensor, deltas: Tensor, regions: list[Tensor], sizes: list[Size],
        original_sizes: Sequence[Size],
    ) -> list[Detections]:  # fmt: skip
        """torchvision's ``postprocess_detections`` of the regions' outputs, as Detections in
        0-based inclusive pixels of the images on disk, best first; a box less than a pixel
        wide or high after clipping (nothing in inclusive pixels) is left out."""
        all_boxes, all_scores, all_labels = self.roi_heads.postprocess_detections(
            logits.detach(), deltas.detach(), regions, sizes
        )
        found = []
        for boxes, scores, labels, size, original in zip(
            all_boxes, all_scores, all_labels, sizes, original_sizes, strict=True
        ):
            boxes = continuous_to_inclusive(boxes)
            keep = ((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])).nonzero()[:, 0]
            mapped = boxes_to_original(boxes[keep], size, original)
            high = mapped.new_tensor([original[1] - 1, original[0] - 1] * 2)
            mapped = mapped.clamp(min=0).minimum(high)
            found.append(Detections(mapped, scores[keep], labels[keep] - 1))
        return found

    # -- the family ---------------------------------------------------------------------------

    def step(self, batch: Mapping[str, Any], detect: bool = False) -> StepOutput:
        images, sizes = self._images(batch)
        targets = self._targets(batch, images.device)
        features = self._features(images)
        proposals, rpn_losses = self._proposals(batch, images, features, sizes, targets)
        regions, _, labels, regression_targets = self.roi_heads.select_training_samples(
            proposals, targets
        )
        logits, deltas = self._box_outputs(features, regions, sizes)
        loss_classifier, loss_box_reg = fastrcnn_loss(logits, deltas, labels, regression_targets)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, **rpn_losses}
        if self.training and not detect:
            return StepOutput(losses, self._image_scores(logits, regions))
        with torch.no_grad():  # every proposal, as predict scores them
            all_logits, all_deltas = self._box_outputs(features, proposals, sizes)
        detections = None
        if detect:
            detections = self._detections(
                all_logits, all_deltas, proposals, sizes, batch["original_size"]
            )
        return StepOutput(losses, self._image_scores(all_logits, proposals), detections)

    def predict(self, batch: Mapping[str, Any]) -> Prediction:
        images, sizes = self._images(batch)
        features = self._features(images)
        proposals, _ = self._proposals(batch, images, features, sizes, None)
        logits, deltas = self._box_outputs(features, proposals, sizes)
        return Prediction(
            self._detections(logits, deltas, proposals, sizes, batch["original_size"]),
            self._image_scores(logits, proposals),
        )
