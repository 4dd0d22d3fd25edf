"""Torchvision backbones: parts, layer arithmetic, weights from a file, the cache or nowhere."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import Tensor
from torchvision.models import AlexNet_Weights, alexnet

from tests.support import small_alexnet_state
from wsl.models.backbones import (
    alexnet_features,
    build_backbone,
    load_backbone_weights,
    spatial_size,
)

ALEXNET_CACHE_NAME = "alexnet-owt-7be5be79.pth"  # torchvision's file name for IMAGENET1K_V1


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Tensor]]:
    """A saved AlexNet state dict (torchvision's format) and the dict itself."""
    state = small_alexnet_state()
    path = tmp_path_factory.mktemp("weights") / "my_alexnet.pth"
    torch.save(state, path)
    return path, state


def test_local_file_loads_the_saved_weights(alexnet_file: tuple[Path, dict[str, Tensor]]) -> None:
    path, state = alexnet_file
    backbone = build_backbone("alexnet", str(path))
    assert torch.equal(backbone.features[0].weight, state["features.0.weight"])
    assert torch.equal(backbone.features[10].bias, state["features.10.bias"])
    assert torch.equal(backbone.fc6.weight, state["classifier.1.weight"])
    assert torch.equal(backbone.fc7.bias, state["classifier.4.bias"])


@pytest.mark.parametrize("key", ["model", "state_dict"])
def test_checkpoint_holding_the_state_dict_under_a_key(
    key: str, alexnet_file: tuple[Path, dict[str, Tensor]], tmp_path: Path
) -> None:
    _, state = alexnet_file
    path = tmp_path / "checkpoint.pth"
    torch.save({key: state, "epoch": torch.tensor(3)}, path)
    loaded = load_backbone_weights("alexnet", str(path))
    assert loaded is not None
    assert torch.equal(loaded["features.3.weight"], state["features.3.weight"])


def test_mismatched_file_names_the_file_and_the_keys(
    alexnet_file: tuple[Path, dict[str, Tensor]], tmp_path: Path
) -> None:
    _, state = alexnet_file
    wrong = {k: v for k, v in state.items() if k != "features.3.weight"}
    wrong["head.weight"] = torch.zeros(1)
    wrong["classifier.6.weight"] = torch.zeros(20, 4096)
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(ValueError) as err:
        alexnet_features(str(path))
    message = str(err.value)
    assert str(path) in message
    assert "1 missing: features.3.weight" in message
    assert "1 unexpected: head.weight" in message
    assert "classifier.6.weight (20, 4096) (expected (1000, 4096))" in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (torch.zeros(3), "holds no state dict"),
        ({"model": "text"}, "holds no state dict"),
        (None, "cannot read"),
    ],
)
def test_file_that_is_no_state_dict(content: object, message: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    if content is None:
        path.write_text("not a torch file\n")
    else:
        torch.save(content, path)
    with pytest.raises(ValueError, match=message) as err:
        load_backbone_weights("alexnet", str(path))
    assert str(path) in str(err.value)


def test_missing_file_and_unknown_backbone(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="'imagenet', 'none' or the path") as err:
        load_backbone_weights("alexnet", str(tmp_path / "absent.pth"))
    assert str(tmp_path / "absent.pth") in str(err.value)
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'"):
        load_backbone_weights("resnet50", "none")


def test_none_is_torchvision_random_init() -> None:
    assert load_backbone_weights("alexnet", "none") is None
    assert load_backbone_weights("vgg16", None) is None
    torch.manual_seed(0)
    ours = alexnet_features("none")
    torch.manual_seed(0)
    theirs = alexnet()
    assert torch.equal(ours[3].weight, theirs.features[3].weight)


def test_imagenet_without_network_says_to_pass_a_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    urls: list[str] = []

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        urls.append(url)
        raise URLError("no network here")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(RuntimeError) as err:
        alexnet_features("imagenet")
    message = str(err.value)
    assert urls == [AlexNet_Weights.IMAGENET1K_V1.url]
    assert "no network here" in message
    assert f"weights=/path/to/{ALEXNET_CACHE_NAME}" in message
    assert str(tmp_path / "hub" / "checkpoints" / ALEXNET_CACHE_NAME) in message


def test_imagenet_reads_torchvision_cache_without_network(
    alexnet_file: tuple[Path, dict[str, Tensor]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, state = alexnet_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / ALEXNET_CACHE_NAME).symlink_to(path)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached file must not be downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert torch.equal(alexnet_features("imagenet")[0].weight, state["features.0.weight"])


@pytest.mark.parametrize(
    ("name", "channels", "roi_size", "fc6_in", "length"),
    [("alexnet", 256, 6, 256 * 6 * 6, 12), ("vgg16", 512, 7, 512 * 7 * 7, 30)],
)
def test_backbone_parts(name: str, channels: int, roi_size: int, fc6_in: int, length: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init time
        backbone = build_backbone(name, "none")
    assert len(backbone.features) == length  # the last max-pool is gone...
    assert isinstance(backbone.features[-1], torch.nn.ReLU)  # ...so conv5 + ReLU ends it
    assert (backbone.channels, backbone.roi_size, backbone.stride) == (channels, roi_size, 16)
    assert (backbone.fc6.in_features, backbone.fc6.out_features) == (fc6_in, 4096)
    assert (backbone.fc7.in_features, backbone.fc7.out_features) == (4096, 4096)


@pytest.mark.parametrize(
    ("size", "alexnet_side", "vgg_side"), [(512, 31, 32), (384, 23, 24), (128, 7, 8), (63, 3, 3)]
)
def test_spatial_size_matches_hand_arithmetic_and_a_forward(
    size: int, alexnet_side: int, vgg_side: int
) -> None:
    # AlexNet at 512: conv1 (512 + 4 - 11) // 4 + 1 = 127, pool 63, pool 31, conv3-5 keep 31.
    with torch.device("meta"):
        for name, side in (("alexnet", alexnet_side), ("vgg16", vgg_side)):
            features = build_backbone(name, "none").features
            assert spatial_size(features, size) == side
            assert features(torch.empty(1, 3, size, size)).shape[-2:] == (side, side)


def test_spatial_size_of_too_small_an_input() -> None:
    with torch.device("meta"):
        features = alexnet_features("none")
    with pytest.raises(ValueError, match="a 30-pixel input is too small"):
        spatial_size(features, 30)
