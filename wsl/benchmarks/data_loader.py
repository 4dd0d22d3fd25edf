"""Data-pipeline throughput: images per second that the WSDDN data config's train loader
delivers, to compare with the training step's.

The loader is the real one: ``conf/train.yaml`` composed with ``data=voc_proposals`` (its
transforms, proposal filter, collate, ``num_workers`` and pinning), on a data set made by
:func:`~wsl.data.generate.generate_voc` with VOC-sized images (sides of 400-500 pixels) and 20
classes; only the root, the batch size, the training scale and the proposal cap are set to the
benchmark's. One epoch warms up (workers start, files enter the page cache); the next epochs
are timed. The loader runs alone: in training, a CPU-only run shares the cores between the
model and the workers, so there the comparison flatters the loader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir

from wsl.data.datamodule import VOCProposalsDataModule
from wsl.data.generate import generate_voc

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass(frozen=True)
class LoaderResult:
    """Images per second that the train loader delivered, and how it was set up."""

    images_per_s: float
    images: int  # per epoch
    batch_size: int
    num_workers: int


def generate_loader_data(
    root: Path, num_images: int, image_size: int, proposals: int, num_classes: int = 20
) -> None:
    """Write a generated VOC-layout set under ``root`` with ``num_images`` trainval images."""
    generate_voc(
        root,
        num_classes=num_classes,
        image_size=image_size,
        num_trainval=num_images,
        num_test=1,
        proposals_per_image=proposals,
    )


def proposals_datamodule(
    root: Path, batch_size: int, scale: int, proposals: int, num_workers: int | None
) -> VOCProposalsDataModule:
    """The ``data=voc_proposals`` datamodule on ``root`` (``num_workers`` None: the config's)."""
    overrides = [
        "data=voc_proposals",
        f"data.root={root}",
        f"data.batch_size={batch_size}",
        f"data.train_transform.scales=[{scale}]",
        f"data.proposal_filter.max_per_image={proposals}",
    ]
    if num_workers is not None:
        overrides.append(f"data.num_workers={num_workers}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return hydra.utils.instantiate(cfg.data)


def measure_data_loader(datamodule: VOCProposalsDataModule, timed_epochs: int) -> LoaderResult:
    """Images per second of ``datamodule``'s train loader over ``timed_epochs`` epochs."""
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    for _ in loader:  # warm-up epoch
        pass
    images, start = 0, time.perf_counter()
    for _ in range(timed_epochs):
        images += sum(len(batch["image"]) for batch in loader)
    seconds = time.perf_counter() - start
    return LoaderResult(
        images_per_s=images / seconds,
        images=len(loader.dataset),
        batch_size=datamodule.batch_size,
        num_workers=datamodule.num_workers,
    )
