"""GlobalPool: values of each mode on hand-made maps, and cells dropped in training only."""

from __future__ import annotations

import math

import pytest
import torch

from wsl.models.pooling import GlobalPool

# One image, two classes, 2x2 maps.
MAPS = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, -5.0], [0.0, -2.0]]]])


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        (GlobalPool("max"), [4.0, 0.0]),
        (GlobalPool("avg"), [2.5, -2.0]),
        (GlobalPool("topk", k=2), [3.5, -0.5]),
        (GlobalPool("topk", k=0.5), [3.5, -0.5]),  # half of 4 cells: 2
        (GlobalPool("topk", k=0.3), [4.0, 0.0]),  # round(1.2) = 1: the max
        (GlobalPool("topk", k=0.9), [2.5, -2.0]),  # round(3.6) = 4: the mean
        (
            GlobalPool("lse", r=1.0),
            [
                math.log((math.e + math.e**2 + math.e**3 + math.e**4) / 4),
                math.log((math.exp(-1) + math.exp(-5) + 1 + math.exp(-2)) / 4),
            ],
        ),
    ],
)
def test_pooled_values(pool: GlobalPool, expected: list[float]) -> None:
    torch.testing.assert_close(pool(MAPS), torch.tensor([expected]))


def test_lse_goes_from_avg_to_max() -> None:
    sharp = GlobalPool("lse", r=1000.0)(MAPS)
    # One top cell per map: max + log(1/4) / r.
    torch.testing.assert_close(sharp, torch.tensor([[4.0, 0.0]]) - math.log(4) / 1000)
    # Small r: avg + r var / 2 + O(r^2) (float64: dividing by r amplifies rounding).
    soft = GlobalPool("lse", r=1e-3)(MAPS.double())
    avg = torch.tensor([[2.5, -2.0]], dtype=torch.float64)
    var = torch.tensor([[1.25, 3.5]], dtype=torch.float64)
    torch.testing.assert_close(soft, avg + 1e-3 * var / 2, rtol=0, atol=1e-5)


def test_lse_is_stable_on_large_scores() -> None:
    maps = torch.full((1, 1, 3, 3), 1000.0)  # exp(5 * 1000) overflows
    pooled = GlobalPool("lse", r=5.0)(maps)
    torch.testing.assert_close(pooled, torch.tensor([[1000.0]]))


def test_drop_leaves_cells_out_in_training_only() -> None:
    torch.manual_seed(0)
    pool = GlobalPool("max", drop=0.5)
    maps = MAPS[:, :1].expand(4000, 1, 2, 2)  # the map [[1, 2], [3, 4]], 4000 times
    pooled = pool(maps)
    assert set(pooled.unique().tolist()) == {1.0, 2.0, 3.0, 4.0}  # the max of the kept cells
    # The 4 is kept (1/2), or every cell is dropped so all are kept (1/16).
    assert abs((pooled == 4).float().mean().item() - 9 / 16) < 0.03
    pool.eval()
    assert torch.equal(pool(maps), torch.full((4000, 1), 4.0))


@pytest.mark.parametrize("mode", ["max", "avg", "lse", "topk"])
def test_dropped_cells_are_not_scored_as_zero(mode: str) -> None:
    # An absent class: every cell negative. nn.Dropout would zero cells, and max pooling
    # would then give 0 (probability 0.5) for the class.
    torch.manual_seed(0)
    maps = -torch.arange(1.0, 10.0).reshape(1, 1, 3, 3).expand(500, 1, 3, 3)
    pooled = GlobalPool(mode, k=3, drop=0.5)(maps)
    assert (pooled <= -1).all()
    assert pooled.unique().numel() > 1  # different cells were dropped


@pytest.mark.parametrize("mode", ["max", "avg", "lse", "topk"])
def test_almost_everything_dropped_stays_finite(mode: str) -> None:
    torch.manual_seed(0)
    maps = torch.randn(200, 2, 2, 2, requires_grad=True)
    pooled = GlobalPool(mode, k=3, drop=0.95)(maps)
    pooled.sum().backward()
    assert torch.isfinite(pooled).all()
    assert torch.isfinite(maps.grad).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "sum"}, {"r": 0.0}, {"k": 0}, {"k": 1.0}, {"k": 1.5}, {"drop": 1.0}, {"drop": -0.1}],
)
def test_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GlobalPool(**kwargs)


def test_topk_larger_than_the_map() -> None:
    with pytest.raises(ValueError, match="k=5 exceeds the 4 cells"):
        GlobalPool("topk", k=5)(MAPS)
