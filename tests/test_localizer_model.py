"""The Localizer: map sizes, new-layer init, weights, map dropout, gradients."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import small_alexnet_state
from wsl.models.localizer import LocalizerAlexNet, LocalizerAlexNetRobust


@pytest.fixture(scope="module")
def localizer() -> LocalizerAlexNet:
    torch.manual_seed(0)
    return LocalizerAlexNet(4, weights="none").eval()


def test_output_at_512(localizer: LocalizerAlexNet) -> None:
    with torch.no_grad():
        out = localizer(torch.randn(1, 3, 512, 512))
    assert out.score_maps.shape == (1, 4, 29, 29)
    assert torch.equal(out.logits, out.score_maps.amax((2, 3)))  # max pooling by default


# By hand: conv1 (s + 4 - 11) // 4 + 1, two 3/2 max-pools (x - 3) // 2 + 1, the 3x3 conv -2.
@pytest.mark.parametrize(("size", "side"), [(512, 29), (384, 21), (160, 7), (128, 5), (63, 1)])
def test_score_map_size(localizer: LocalizerAlexNet, size: int, side: int) -> None:
    assert localizer.score_map_size(size) == side


def test_score_map_size_matches_a_forward(localizer: LocalizerAlexNet) -> None:
    with torch.no_grad():
        out = localizer(torch.randn(2, 3, 160, 160))
    assert out.score_maps.shape == (2, 4, 7, 7)
    assert out.logits.shape == (2, 4)
    with pytest.raises(ValueError, match="a 62-pixel input is too small"):
        localizer.score_map_size(62)


def test_new_layers_are_xavier_uniform_with_zero_bias(localizer: LocalizerAlexNet) -> None:
    convs = [m for m in localizer.head if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (256, 256, (3, 3)),
        (256, 256, (1, 1)),
        (256, 4, (1, 1)),
    ]
    for conv in convs:
        area = conv.kernel_size[0] * conv.kernel_size[1]
        bound = math.sqrt(6 / ((conv.in_channels + conv.out_channels) * area))
        weight = conv.weight.detach()
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
        assert 0.95 * bound < weight.abs().max() <= bound
        assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_weights_file_reaches_the_features(tmp_path: Path) -> None:
    state = small_alexnet_state()
    torch.save(state, tmp_path / "alexnet.pth")
    model = LocalizerAlexNet(2, weights=str(tmp_path / "alexnet.pth"))
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.features[8].weight, state["features.8.weight"])


def test_robust_map_dropout_in_training_only() -> None:
    torch.manual_seed(0)
    model = LocalizerAlexNetRobust(3, weights="none")
    assert (model.pool.mode, model.pool.r, model.pool.drop) == ("lse", 5.0, 0.3)
    images = torch.randn(2, 3, 128, 128)  # 5x5 maps
    with torch.no_grad():
        first, second = model.train()(images), model.train()(images)
        assert torch.equal(first.score_maps, second.score_maps)  # the heatmaps are untouched
        assert not torch.equal(first.logits, second.logits)  # different cells left out
        third, fourth = model.eval()(images), model.eval()(images)
    assert torch.equal(third.logits, fourth.logits)
    by_hand = (torch.logsumexp(5 * third.score_maps.flatten(2), -1) - math.log(25)) / 5
    torch.testing.assert_close(third.logits, by_hand)


@pytest.mark.parametrize(
    "model_class, kwargs",
    [
        (LocalizerAlexNet, {}),
        (LocalizerAlexNetRobust, {}),
        (LocalizerAlexNetRobust, {"pooling": "topk", "topk": 3}),
    ],
)
def test_gradients_reach_the_features(model_class: type[LocalizerAlexNet], kwargs: dict) -> None:
    torch.manual_seed(0)
    model = model_class(3, weights="none", **kwargs).train()
    out = model(torch.randn(2, 3, 128, 128))
    F.binary_cross_entropy_with_logits(
        out.logits, torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    ).backward()
    assert model.features[0].weight.grad.abs().sum() > 0
    assert model.head[0].weight.grad.abs().sum() > 0


def test_frozen_features_get_no_gradient() -> None:
    model = LocalizerAlexNet(3, weights="none", freeze_features=True).train()
    out = model(torch.randn(1, 3, 128, 128))
    F.binary_cross_entropy_with_logits(out.logits, torch.ones(1, 3)).backward()
    assert all(p.grad is None for p in model.features.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
