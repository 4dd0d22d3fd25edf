"""One optimizer step is the step of the global batch: k DDP processes x n images, and a
accumulated batches of n images, step as one process with one batch of k x n (a x n) images.

Each run is ``python -m wsl.train`` for one epoch of one optimizer step on a training split of
exactly 4 images (so every configuration sees the same 4 images in that step), from the same
seeded weights, with plain SGD, no dropout and no random augmentation; the weights in
``last.ckpt`` are compared.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from wsl.data.generate import generate_voc
from wsl.training.loss_scale import sum_over_global_batch

ROOT = Path(__file__).resolve().parents[1]

FAMILIES = {
    "wsddn": (
        "experiment=wsddn_demo", "callbacks=default", "model.net.dropout=0.0",
        "data.train_transform.scales=[64]", "data.train_transform.max_size=64",
        "data.proposal_filter.max_per_image=8", "model.optimizer._target_=torch.optim.SGD",
        "model.optimizer.lr=0.5", "model.optimizer.momentum=0.0",
    ),
    "localizer": (
        "experiment=localizer_demo", "callbacks=default", "data.train_transform.scales=[64]",
        "model.optimizer.lr=0.5", "model.optimizer.momentum=0.0",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def four_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated data set whose trainval split holds 4 images."""
    root = tmp_path_factory.mktemp("four")
    generate_voc(root, seed=1, image_size=64, num_trainval=4, num_test=2, proposals_per_image=10)
    return root


def weights_after_one_step(root: Path, run_dir: Path, family: str, *extra: str) -> dict:
    """The weights after one epoch (one optimizer step) of ``family`` on ``root``."""
    command = [
        sys.executable, "-m", "wsl.train", *FAMILIES[family], f"data.root={root}",
        "data.train_split=trainval", "data.num_workers=0", "data.train_transform.flip=false",
        "model.optimizer.weight_decay=0.0", "trainer.max_epochs=1",
        "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", "test=false",
        "logger=none", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 1
    return checkpoint["state_dict"]


def assert_same_step(found: dict, expected: dict, start: dict) -> None:
    """``found`` equals ``expected`` to float tolerance, relative to the step's size."""
    step = max((expected[k] - start[k]).abs().max().item() for k in expected)
    assert step > 1e-4  # the step moved the weights: a wrong scale would show
    for name, value in expected.items():
        assert torch.allclose(found[name], value, rtol=0, atol=1e-4 * step), name


@pytest.mark.parametrize("family", ["wsddn", "localizer"])
def test_processes_and_accumulation_step_as_one_batch(
    family: str, four_images: Path, tmp_path: Path
) -> None:
    start = weights_after_one_step(four_images, tmp_path / "start", family, "model.optimizer.lr=0")
    one = weights_after_one_step(four_images, tmp_path / "one", family, "data.batch_size=4")
    two = weights_after_one_step(
        four_images, tmp_path / "two", family, "data.batch_size=2", "trainer=ddp_cpu"
    )
    assert_same_step(two, one, start)
    accumulated = weights_after_one_step(
        four_images, tmp_path / "acc", family, "data.batch_size=2",
        "+trainer.accumulate_grad_batches=2",
    )  # fmt: skip
    assert_same_step(accumulated, one, start)


def test_sum_over_global_batch_scales_by_processes_and_accumulation() -> None:
    per_image = torch.tensor(0.25)
    assert sum_over_global_batch(per_image, 4, None).item() == 1.0
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, accumulate_grad_batches=3, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    assert sum_over_global_batch(per_image, 4, trainer).item() == 0.25 * 4 * 1 * 3
