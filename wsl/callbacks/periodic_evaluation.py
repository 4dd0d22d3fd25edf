"""VOC07 detection AP of a detector on a fixed subset of images, every k steps while it trains.

The LightningModule must have ``detect(batch) -> [(boxes (K, 4), scores (K,), classes (K,))]``,
one tuple per image, boxes in 0-based inclusive pixels of the image on disk (every family:
:class:`~wsl.training.module.WSLModule`).
The images are drawn once, with a seed, from a split of the datamodule (``trainer.datamodule``,
a :class:`~wsl.data.datamodule.VOCDataModule`), loaded with its eval transform, collate function,
batch size and workers. AP is VOC07's (11-point, difficult ignored, see
:mod:`wsl.evaluation.voc_detection`) on those images only, so it estimates, not replaces, the test.

Only rank 0 evaluates, on all the subset's images, while other ranks wait at their next
synchronisation; the AP is computed without gathering across processes (a gather on one rank
would hang). The full, DDP-gathered evaluation is the test step's job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

from wsl.data.dataset import VOCDataset
from wsl.evaluation.per_image import defined_mean
from wsl.evaluation.voc_detection import voc_detection_ap
from wsl.loggers.images import log_bar
from wsl.structures.detections import Detections, ImageDetections, ImageGroundTruth
from wsl.training.module import inference_context

log = logging.getLogger(__name__)
T = TypeVar("T")


def split_dataset(trainer: pl.Trainer, split: str | None) -> tuple[str, VOCDataset]:
    """The name and eval-transform dataset of ``split`` of ``trainer.datamodule`` (``None``:
    its validation split)."""
    datamodule = trainer.datamodule
    if datamodule is None or not hasattr(datamodule, "dataset"):
        raise ValueError(
            "detection callbacks read images from the datamodule: fit with "
            "trainer.fit(model, datamodule=...) and a wsl.data VOC datamodule"
        )
    split = split or datamodule.splits["validate"]
    return split, datamodule.dataset(split)


def fixed_subset(length: int, count: int | None, seed: int) -> list[int]:
    """``count`` of the indices ``0 .. length - 1`` drawn with ``seed``, in ascending order
    (all of them when ``count`` is ``None`` or at least ``length``)."""
    if count is None or count >= length:
        return list(range(length))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(length, generator=generator)[:count].tolist())


def subset_loader(trainer: pl.Trainer, dataset: VOCDataset, indices: Sequence[int]) -> DataLoader:
    """``dataset[indices]`` in order, batched as the datamodule batches."""
    datamodule = trainer.datamodule
    return DataLoader(
        Subset(dataset, list(indices)),
        batch_size=datamodule.batch_size,
        shuffle=False,
        num_workers=datamodule.num_workers,
        collate_fn=datamodule.collate,
    )


def run_detect(trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> list[Detections]:
    """``pl_module.detect(batch)`` as :func:`run_in_eval_mode` runs it."""
    return run_in_eval_mode(trainer, pl_module, batch, pl_module.detect)


def run_in_eval_mode(
    trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, function: Callable[[Any], T]
) -> T:
    """``function(batch)`` (a method of ``pl_module``) with the batch on the module's device,
    in :func:`~wsl.training.module.inference_context` (eval mode without gradients; the
    module's mode is restored afterwards)."""
    batch = trainer.strategy.batch_to_device(batch, pl_module.device)
    with inference_context(pl_module):
        return function(batch)


class PeriodicDetectionEvaluation(pl.Callback):
    """Log VOC07 detection AP on fixed images every ``every_n_steps`` steps and after training.

    Logged at the optimizer step it was reached: ``eval/det_mAP`` to every logger; class-wise
    AP with :func:`~wsl.loggers.images.log_bar` as ``eval/det_AP`` (TensorBoard: a bar-chart
    figure and scalars ``eval/det_AP/<class>``; visdom: a bar window). Classes without a
    non-difficult GT box among the images have no AP and are left out of both.

    Args:
        every_n_steps: evaluate after optimizer steps k, 2k, ... and once more when training
            ends (unless the last step was just evaluated).
        split: the datamodule's split to draw images from (``None``: its validation split).
        max_images: how many images (``None``: the whole split).
        seed: picks the images (the same ones at every evaluation).
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        split: str | None = None,
        max_images: int | None = 200,
        seed: int = 0,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.split = split
        self.max_images = max_images
        self.seed = seed
        self.loader: DataLoader | None = None
        self.class_names: list[str] = []
        self._last_step: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        split, dataset = split_dataset(trainer, self.split)
        if not dataset.index.has_boxes:
            log.info("no periodic detection AP: split %r has no object boxes", split)
            return
        indices = fixed_subset(len(dataset), self.max_images, self.seed)
        self.loader = subset_loader(trainer, dataset, indices)
        self.class_names = list(dataset.index.classes)
        log.info(
            "detection AP every %d steps on %d %s images", self.every_n_steps, len(indices), split
        )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Detect, compute AP and log it; return ``{"det_mAP", "det_AP"}`` (``{}`` on other
        ranks and when this step was evaluated already)."""
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step or self.loader is None:
            return {}
        self._last_step = step
        detections, ground_truths = [], []
        for batch in self.loader:
            if batch is None:  # every image of the batch failed to decode (on_error=skip)
                continue
            detections += [ImageDetections.of(*d) for d in run_detect(trainer, pl_module, batch)]
            gt = zip(
                batch["original_gt_boxes"], batch["gt_classes"], batch["gt_difficult"], strict=True
            )
            ground_truths += [ImageGroundTruth.of(*g) for g in gt]
        per_class = voc_detection_ap(detections, ground_truths, len(self.class_names))
        ap_per_class = {name: c.ap for name, c in zip(self.class_names, per_class, strict=True)}
        mean_ap = defined_mean(list(ap_per_class.values()))
        for logger in trainer.loggers:
            logger.log_metrics({"eval/det_mAP": mean_ap}, step=step)
        defined = {name: ap for name, ap in ap_per_class.items() if not math.isnan(ap)}
        log_bar(trainer.loggers, "eval/det_AP", list(defined.values()), list(defined), step=step)
        log.info("step %d: eval/det_mAP %.4f on %d images", step, mean_ap, len(detections))
        return {"det_mAP": mean_ap, "det_AP": ap_per_class}
