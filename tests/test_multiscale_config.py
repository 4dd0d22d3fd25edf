"""The shared multi-scale block (conf/multiscale/five_scales.yaml): each experiment gets the
authors' views from it, and the test views follow the training scales."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
FIVE = [480, 576, 688, 864, 1200]


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(
    ("experiment", "train", "test", "tta_scales"),
    [
        # (resize, max_size) of the training and the test views; the TTA's scales
        ("wsddn_paper", ("shortest_side", 2000), ("shortest_side", 2000), FIVE),
        ("oicr", ("shortest_side", 2000), ("longest_side", None), FIVE),
        ("pcl", ("longest_side", None), ("longest_side", None), FIVE),
        ("mist", ("shortest_side", 2000), ("shortest_side", 2000), [800, *FIVE[:4], 1000, 1200]),
    ],
)
def test_each_experiment_has_its_authors_views(
    experiment: str, train: tuple, test: tuple, tta_scales: list[int]
) -> None:
    cfg = composed(f"experiment={experiment}")
    data, tta = cfg.data, cfg.model.net.tta
    expected_train = FIVE if experiment != "mist" else [*FIVE[:4], 1000, 1200]
    assert list(data.train_transform.scales) == expected_train and data.train_transform.flip
    assert (data.train_transform.resize, data.train_transform.max_size) == train
    assert list(data.eval_transform.scales) == [1200] and not data.eval_transform.flip
    assert (data.eval_transform.resize, data.eval_transform.max_size) == test
    assert (tta.resize, tta.max_size, list(tta.scales), tta.flip) == (*test, tta_scales, True)


def test_the_test_views_follow_the_training_scales() -> None:
    cfg = composed("experiment=oicr", "data.train_transform.scales=[600,800]")
    assert list(cfg.model.net.tta.scales) == [600, 800]
