"""Shared fixtures: a small generated VOC data set, made once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wsl.data.generate import generate_voc

pytest_plugins = ["tests.visdom_server"]

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated VOC2007-layout data set (read-only: copy it before changing it)."""
    root = tmp_path_factory.mktemp("generated")
    generate_voc(root, seed=0, num_trainval=24, num_test=12, proposals_per_image=60)
    return root


@pytest.fixture
def data_copy(generated_root: Path, tmp_path: Path) -> Path:
    """A private copy of the generated data set that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(generated_root, root)
    return root


LOCALIZER = ["experiment=localizer_demo", "callbacks.heatmaps.num_train_images=0",
             "callbacks.heatmaps.num_final_images=0"]  # fmt: skip


@pytest.fixture(scope="session")
def localizer_ckpt(generated_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained Localizer's ``last.ckpt`` (read-only: copy it before changing it)."""
    from tests.test_predict import train_checkpoint  # imports wsl.train: only when needed

    return train_checkpoint(generated_root, tmp_path_factory.mktemp("ckpt") / "train", *LOCALIZER)
