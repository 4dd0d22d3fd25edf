"""One optimizer step is the step of the global batch: k DDP processes x n images, and a
accumulated batches of n images, step as one process with one batch of k x n (a x n) images.

Each run trains one epoch of one optimizer step on a training split of exactly 4 images (so
every configuration sees the same 4 images in that step), from the same seeded weights, with
plain SGD, no dropout and no random augmentation; the weights in ``last.ckpt`` are compared.
The single-process runs call ``wsl.train.train``; the DDP one is ``python -m wsl.train
trainer=ddp_cpu`` (2 gloo processes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch

from tests.support import compose_cfg
from wsl.data.generate import generate_voc
from wsl.train import train
from wsl.training.loss_scale import sum_over_global_batch

ROOT = Path(__file__).resolve().parents[1]

FAMILIES = {
    "wsddn": (
        "experiment=wsddn_demo", "model.net.dropout=0.0", "data.proposal_filter.max_per_image=8",
        "model.optimizer._target_=torch.optim.SGD", "model.optimizer.momentum=0.0",
    ),
    "localizer": ("experiment=localizer_demo", "model.optimizer.momentum=0.0"),
}  # fmt: skip


@pytest.fixture(scope="module")
def four_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated data set whose trainval split holds 4 images."""
    root = tmp_path_factory.mktemp("four")
    generate_voc(root, seed=1, image_size=64, num_trainval=4, num_test=2, proposals_per_image=10)
    return root


def overrides(root: Path, family: str, *extra: str) -> list[str]:
    """One epoch (one optimizer step) of ``family`` on ``root``'s 4 trainval images, every
    image resized to 64 x 64 (a batch of WSDDN pads its images to the largest: equal sizes
    make the padding the same whichever images share a batch), without flip."""
    return [
        *FAMILIES[family], f"data.root={root}", "data.train_split=trainval",
        "data.num_workers=0", "data.train_transform.resize=square",
        "data.train_transform.scales=[64]", "data.train_transform.max_size=null",
        "data.train_transform.flip=false", "model.optimizer.lr=0.1",
        "model.optimizer.weight_decay=0.0", "trainer.max_epochs=1",
        "+trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", "test=false",
        "logger=none", "callbacks=default", *extra,
    ]  # fmt: skip


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 1
    return checkpoint["state_dict"]


def in_process(root: Path, run_dir: Path, family: str, *extra: str) -> dict[str, torch.Tensor]:
    """The weights after the run, trained in this process."""
    train(compose_cfg("train", overrides(root, family, *extra), run_dir))
    return last_weights(run_dir)


def two_processes(root: Path, run_dir: Path, family: str, *extra: str) -> dict[str, torch.Tensor]:
    """The weights after the run with ``trainer=ddp_cpu`` (2 gloo processes)."""
    command = [
        sys.executable, "-m", "wsl.train", *overrides(root, family, *extra), "trainer=ddp_cpu",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    return last_weights(run_dir)


def initial_weights(root: Path, run_dir: Path, family: str) -> dict[str, torch.Tensor]:
    """The seeded weights every run starts from (``wsl.train`` seeds, then builds the model)."""
    cfg = compose_cfg("train", overrides(root, family), run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model, class_names=datamodule.class_names)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_step(found: dict, expected: dict, start: dict) -> None:
    """``found`` equals ``expected`` to float tolerance, relative to the step's size."""
    step = max((expected[k] - start[k]).abs().max().item() for k in expected)
    assert step > 1e-3  # the step moved the weights: a wrong scale would show
    for name, value in expected.items():
        assert torch.allclose(found[name], value, rtol=0, atol=1e-4 * step), name


@pytest.mark.parametrize("family", ["wsddn", "localizer"])
def test_two_accumulated_batches_step_as_one_batch(
    family: str, four_images: Path, tmp_path: Path
) -> None:
    start = initial_weights(four_images, tmp_path / "start", family)
    one = in_process(four_images, tmp_path / "one", family, "data.batch_size=4")
    accumulated = in_process(
        four_images, tmp_path / "acc", family, "data.batch_size=2",
        "trainer.accumulate_grad_batches=2",
    )  # fmt: skip
    assert_same_step(accumulated, one, start)


# The Localizer's mean loss through DDP: 15 s more; WSDDN's summed loss stays in make test.
@pytest.mark.parametrize("family", ["wsddn", pytest.param("localizer", marks=pytest.mark.slow)])
def test_two_processes_step_as_one_process(family: str, four_images: Path, tmp_path: Path) -> None:
    start = initial_weights(four_images, tmp_path / "start", family)
    one = in_process(four_images, tmp_path / "one", family, "data.batch_size=4")
    two = two_processes(four_images, tmp_path / "two", family, "data.batch_size=2")
    assert_same_step(two, one, start)


def test_sum_over_global_batch_scales_by_processes_and_accumulation() -> None:
    per_image = torch.tensor(0.25)
    assert sum_over_global_batch(per_image, 4, None).item() == 1.0
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, accumulate_grad_batches=3, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    assert sum_over_global_batch(per_image, 4, trainer).item() == 0.25 * 4 * 1 * 3
