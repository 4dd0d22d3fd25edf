"""Heatmap pictures of a Localizer while it trains and when it is done.

During training: a fixed set of training images, at the first and last epoch and every
``every_n_epochs``; at the end: random validation images. Each picture is the image on
disk with one class's heatmap (sigmoid of its score map, resized to the image,
colour-mapped) blended over it, for each GT class of the image, titled with the image id,
the class and its image score, with a colour bar. Pictures go to every logger that shows
images (TensorBoard, visdom), one tag per picture (``heatmaps/train/<image id>/<class>``,
the step on TensorBoard's slider), and to ``<output_dir>/heatmaps/train/epoch_E/step_S/
batch_B/<image id>/<class>.png`` (``heatmaps/final/batch_B/...`` at the end), so the files
keep every epoch's pictures; image ids and class names are checked to be plain names, so the
files stay under ``output_dir``. Only rank 0 draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

from wsl.callbacks.periodic_evaluation import run_in_eval_mode
from wsl.data.dataset import VOCDataset
from wsl.data.images import read_rgb_tensor
from wsl.drawing import enlarge, heatmap_picture, save_png
from wsl.loggers.images import log_image
from wsl.runtime.names import contained_path


class HeatmapPictures(pl.Callback):
    """Log heatmaps of fixed training images during training and of validation images at the end.

    Args:
        output_dir: folder for the PNG files (``None``: loggers only).
        num_train_images: how many training images to follow through training.
        every_n_epochs: draw them every this many epochs (and at the first and last).
        num_final_images: how many random validation images to draw at the end.
        seed: picks the images.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        num_train_images: int = 4,
        every_n_epochs: int = 5,
        num_final_images: int = 20,
        seed: int = 0,
    ) -> None:
        self.output_dir = Path(output_dir) if output_dir else None
        self.num_train_images = num_train_images
        self.every_n_epochs = every_n_epochs
        self.num_final_images = num_final_images
        self.seed = seed

    def _pick(self, dataset: VOCDataset, count: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randperm(len(dataset), generator=generator)[:count].tolist()

    def _due(self, trainer: pl.Trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        return epoch == 0 or last or (epoch + 1) % self.every_n_epochs == 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.num_train_images or not self._due(trainer):
            return
        datamodule = trainer.datamodule
        dataset = datamodule.dataset(datamodule.splits["fit"])
        folder = f"heatmaps/train/epoch_{trainer.current_epoch:03d}/step_{trainer.global_step}"
        indices = self._pick(dataset, self.num_train_images)
        self.draw(trainer, pl_module, dataset, indices, "heatmaps/train", folder)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.num_final_images:
            return
        datamodule = trainer.datamodule
        dataset = datamodule.dataset(datamodule.splits["validate"])
        indices = self._pick(dataset, self.num_final_images)
        self.draw(trainer, pl_module, dataset, indices, "heatmaps/final", "heatmaps/final")

    @torch.no_grad()
    def draw(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        dataset: VOCDataset,
        indices: Sequence[int],
        prefix: str,
        folder: str,
    ) -> list[str]:
        """Draw the heatmaps of ``dataset[indices]``, logged as ``<prefix>/<image id>/<class>``
        and saved as ``<folder>/batch_<B>/<image id>/<class>.png``; return the tags."""
        tags = []
        for batch_position, i in enumerate(indices):
            sample = dataset[i]
            if sample is None:
                continue
            size = tuple(sample["image"].shape[1:])
            batch = {
                "image": sample["image"][None],
                "original_size": [sample.get("original_size", size)],
            }
            _, [evidence] = run_in_eval_mode(
                trainer, pl_module, batch, pl_module.detect_with_evidence
            )
            assert evidence is not None, "the model gives no heatmaps"
            record = dataset.index[i]
            picture = read_rgb_tensor(record.image_path)
            directory = None
            if self.output_dir is not None:
                parts = (f"batch_{batch_position}", record.image_id)
                directory = contained_path(self.output_dir / folder, *parts)
            tag = f"{prefix}/{record.image_id}"
            self._emit(trainer, f"{tag}/image", directory, "image", enlarge(picture, 384)[0])
            tags.append(f"{tag}/image")
            for c in sorted(set(sample["gt_classes"].tolist())):
                name = dataset.index.classes[c]
                title = f"{record.image_id} · {name} · score {float(evidence.class_scores[c]):.3g}"
                overlay = heatmap_picture(picture, evidence.heatmaps[c], title)
                self._emit(trainer, f"{tag}/{name}", directory, name, overlay)
                tags.append(f"{tag}/{name}")
        return tags

    def _emit(
        self,
        trainer: pl.Trainer,
        tag: str,
        directory: Path | None,
        name: str,
        picture: torch.Tensor,
    ) -> None:
        """Log ``picture`` under ``tag``; save it as ``<directory>/<name>.png`` (``name`` checked
        to be a plain name) unless there is no output folder."""
        log_image(trainer.loggers, tag, picture, step=trainer.global_step)
        if directory is not None:
            save_png(picture, contained_path(directory, f"{name}.png"))
