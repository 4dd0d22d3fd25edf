"""VGG16 at stride 8 as OICR's and PCL's code (``vgg16_dilated``): pool4 gone, conv5 dilated,
ROIs pooled at 1/8, VGG16's weights unchanged, conv1_x and conv2_x frozen (``freeze_blocks``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pytest
import torch
from torch import Tensor, nn
from torchvision.models import vgg16

from tests.support import compose_cfg
from wsl.models import roi as roi_module
from wsl.models.backbones import build_backbone, load_backbone_weights, spatial_size
from wsl.models.roi import pool_regions, receptive_field_centre
from wsl.models.wsddn import WSDDN

# conv1_1 3*64*9+64, conv1_2 64*64*9+64, conv2_1 64*128*9+128, conv2_2 128*128*9+128
FROZEN_BY_TWO_BLOCKS = 1792 + 36928 + 73856 + 147584


def test_the_stride_8_body_has_no_pool4_and_a_dilated_conv5() -> None:
    with torch.device("meta"):
        body = build_backbone("vgg16_dilated", "none")
        plain = build_backbone("vgg16", "none")
    pools = [n for n, m in body.features.named_children() if isinstance(m, nn.MaxPool2d)]
    assert pools == ["4", "9", "16"]  # pool1-3; torchvision's pool4 is features.23
    conv5 = [m for n, m in body.features.named_children() if n in ("24", "26", "28")]
    assert [(c.dilation, c.padding) for c in conv5] == [((2, 2), (2, 2))] * 3
    assert (body.stride, plain.stride, body.roi_size, body.channels) == (8, 16, 7, 512)
    # no new parameter: the same names and shapes as VGG16's body
    assert {k: v.shape for k, v in body.features.state_dict().items()} == {
        k: v.shape for k, v in plain.features.state_dict().items()
    }
    assert plain.features[24].dilation == (1, 1)  # building one leaves the other alone


@pytest.mark.parametrize(
    ("height", "width", "stride_8", "stride_16"),
    # three pools halve (floor) 76 -> 38 -> 19 -> 9 and 100 -> 50 -> 25 -> 12; pool4 12 -> 6
    [(76, 100, (9, 12), (4, 6)), (512, 512, (64, 64), (32, 32)), (600, 800, (75, 100), (37, 50))],
)
def test_the_feature_map_of_the_stride_8_body_has_the_hand_computed_size(
    height: int, width: int, stride_8: tuple[int, int], stride_16: tuple[int, int]
) -> None:
    with torch.device("meta"):
        body = build_backbone("vgg16_dilated", "none").features
        plain = build_backbone("vgg16", "none").features
        image = torch.empty(1, 3, height, width)
        assert body(image).shape == (1, 512, *stride_8)
        assert plain(image).shape == (1, 512, *stride_16)
    assert spatial_size(body, width) == stride_8[1]
    assert receptive_field_centre(body) == 3.5  # pools at jumps 1, 2, 4: 0.5 + 1 + 2


def test_boxes_map_to_cells_at_one_eighth(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    roi_pool = roi_module.roi_pool

    def spy(features: Tensor, rois: Tensor, output_size: int, spatial_scale: float) -> Tensor:
        seen.append(spatial_scale)
        return roi_pool(features, rois, output_size, spatial_scale=spatial_scale)

    monkeypatch.setattr(roi_module, "roi_pool", spy)
    with torch.device("meta"):
        net = WSDDN(3, backbone="vgg16_dilated", weights="none")
        net(torch.empty(1, 3, 76, 100), [torch.zeros(2, 4)])
    assert seen == [0.125] and net.stride == 8
    # Cell (y, x) holds 10 y + x. Box x 8..23, y 16..31: Fast R-CNN rounding at 1/8 gives
    # cells x round(1) .. round(2.875) = 1..3, y round(2) .. round(3.875) = 2..4: max 43;
    # at 1/16 it would be x 1..1 (round(0.5) = 1, round(1.44) = 1), y 1..2: max 21.
    cells = (10 * torch.arange(10.0)[:, None] + torch.arange(10.0)).reshape(1, 1, 10, 10)
    boxes, image = torch.tensor([[8.0, 16.0, 23.0, 31.0]]), torch.zeros(1, dtype=torch.long)
    assert pool_regions(cells, boxes, image, 1, net.stride).item() == 43
    assert pool_regions(cells, boxes, image, 1, 16).item() == 21


def small_vgg16_state() -> dict[str, Tensor]:
    """A random full VGG16 state dict of stride-0 views (one value per row: a small file)."""
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vgg16().state_dict().items()}
    return {
        k: torch.randn(s[0], *[1] * (len(s) - 1), generator=g).expand(s)
        if len(s) > 1
        else torch.randn(s, generator=g)
        for k, s in shapes.items()
    }


def test_vgg16_weights_load_unchanged_into_the_stride_8_body(tmp_path: Path) -> None:
    state = small_vgg16_state()
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    assert load_backbone_weights("vgg16_dilated", str(path)) is not None  # strict key check
    body = build_backbone("vgg16_dilated", str(path))
    for key in ("0", "21", "24", "28"):  # conv1_1, conv4_3, conv5_1, conv5_3
        assert torch.equal(body.features.get_submodule(key).weight, state[f"features.{key}.weight"])
    assert torch.equal(body.fc6.weight, state["classifier.0.weight"])
    assert torch.equal(body.fc7.bias, state["classifier.3.bias"])


def test_freeze_blocks_is_checked() -> None:
    with (
        torch.device("meta"),
        pytest.raises(ValueError, match="freeze_blocks must be between 0 and 5"),
    ):
        WSDDN(3, backbone="vgg16_dilated", weights="none", freeze_blocks=6)


@pytest.mark.parametrize(
    ("backbone", "freeze_conv1", "freeze_blocks", "frozen"),
    [("vgg16", True, 0, ["0"]), ("vgg16", False, 0, []),  # freeze_conv1 alone: as before
     ("vgg16_dilated", True, 2, ["0", "2", "5", "7"]),
     ("vgg16_dilated", False, 2, ["0", "2", "5", "7"]),
     ("alexnet", True, 2, ["0", "3"])],
)  # fmt: skip
def test_the_frozen_convolutions(
    backbone: str, freeze_conv1: bool, freeze_blocks: int, frozen: list[str]
) -> None:
    with torch.device("meta"):
        net = WSDDN(3, backbone, "none", freeze_conv1=freeze_conv1, freeze_blocks=freeze_blocks)
    fixed = sorted(
        n for n, m in net.features.named_children()
        if isinstance(m, nn.Conv2d) and not m.weight.requires_grad
    )  # fmt: skip
    assert fixed == sorted(frozen)
    assert all(p.requires_grad for p in (*net.fc6.parameters(), *net.fc8d.parameters()))


def oicr_vgg16(tmp_path: Path, experiment: str = "oicr_vgg16") -> Any:
    return compose_cfg("train", [f"experiment={experiment}", "model.net.weights=none"], tmp_path)


@pytest.mark.parametrize("experiment", ["oicr_vgg16", "pcl_vgg16"])
def test_the_vgg16_experiments_use_the_stride_8_body_with_two_frozen_blocks(
    experiment: str, tmp_path: Path
) -> None:
    net = oicr_vgg16(tmp_path, experiment).model.net
    assert (net.backbone, net.freeze_blocks, net.freeze_conv1) == ("vgg16_dilated", 2, True)


def test_conv1_and_conv2_get_no_gradient_and_no_optimizer_slot(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = hydra.utils.instantiate(oicr_vgg16(tmp_path).model, class_names=["a", "b", "c"])
    features = module.net.features
    images = torch.rand(1, 3, 64, 48)
    output = module.net(images, [torch.tensor([[0.0, 0.0, 47.0, 63.0], [8.0, 8.0, 31.0, 39.0]])])
    streams = module.net.refinement(output.features)
    (output.image_scores.sum() + sum(s.sum() for s in streams)).backward()
    for key in ("0", "2", "5", "7"):  # conv1_1, conv1_2, conv2_1, conv2_2
        conv = features.get_submodule(key)
        assert conv.weight.grad is None and conv.bias.grad is None
    for key in ("10", "28"):  # conv3_1, conv5_3
        assert features.get_submodule(key).weight.grad is not None
    grouped = [p for group in module.parameter_groups() for p in group["params"]]
    total = sum(p.numel() for p in module.parameters())
    assert sum(p.numel() for p in grouped) == total - FROZEN_BY_TWO_BLOCKS
    frozen = {
        id(p) for key in ("0", "2", "5", "7") for p in features.get_submodule(key).parameters()
    }
    assert not frozen & {id(p) for p in grouped}
