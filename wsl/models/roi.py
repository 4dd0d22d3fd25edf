"""Regions of a batch's feature maps: ROI pooling, cell geometry, softmax over an image's regions.

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
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

ROI_OPS = ("pool", "align")
ROI_SHRINK = 9.5  # pixels each box end moves inwards before mapping to cells (wsddn_train.m: o1)


def float32_block(device_type: str) -> AbstractContextManager[Any]:
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
