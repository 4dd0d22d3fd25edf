"""Shared fixtures: a small generated VOC data set and a briefly trained Localizer, each made
once per test session. Plain helpers and constants: tests/support.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wsl.data.generate import generate_voc

pytest_plugins = ["tests.visdom_server"]


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


@pytest.fixture(scope="session")
def localizer_ckpt(generated_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained Localizer's ``last.ckpt`` (``debug=fast``: one epoch in batches of 8),
    trained once per session for every test that only needs one (read-only: copy it before
    changing it or saving beside it)."""
    from tests.support import train_checkpoint  # imports torch: only when needed

    run_dir = tmp_path_factory.mktemp("ckpt") / "train"
    return train_checkpoint(generated_root, run_dir, "experiment=localizer_demo")
