"""Pictures of a detector's best box for each class in fixed images, untrained and trained.

The LightningModule must have ``detections_by_source(batch)`` as
:class:`~wsl.training.module.WSLModule` (every family): ``{name: detect(batch)}``. A fixed,
seeded set of images of a split is drawn when training starts (the model before any step: the
first evaluation's model) and when it ends (the model of the evaluator's final evaluation, at the
same step); :meth:`BoxPictures.draw` draws them at any other time. Each picture is the image on disk
with its GT boxes (white, labelled with the class) and, for each class present in the image,
the detector's top-scoring box of that class (class colour, labelled with class and score).
A model with several sources of detections (``detections_by_source``: OICR and PCL give WSDDN's
and their last refinement stream's) gets one such panel per source, side by side and titled.
Pictures go to every logger that shows images, one tag per image, ``boxes/<split>/<image id>``
(the step on TensorBoard's slider), and to ``<output_dir>/boxes/<split>/step_<S>/<image id>.png``
(split and image id checked to be plain names, so the file stays under ``output_dir``); only
rank 0 draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from wsl.callbacks.periodic_evaluation import (
    fixed_subset,
    run_in_eval_mode,
    split_dataset,
    subset_loader,
)
from wsl.data.dataset import VOCDataset
from wsl.data.images import read_rgb_tensor
from wsl.drawing import GT_COLOUR, PALETTE, draw_boxes, save_png, side_by_side
from wsl.loggers.images import log_image
from wsl.runtime.names import contained_path
from wsl.structures.detections import ImageDetections


def top_box_per_class(
    boxes: Tensor, scores: Tensor, classes: Tensor, wanted: Sequence[int]
) -> list[tuple[int, Tensor, float]]:
    """``(class, box, score)`` of the top-scoring detection of each ``wanted`` class that has
    one (:meth:`~wsl.structures.detections.ImageDetections.top_of_class`), in the order of
    ``wanted``."""
    detections = ImageDetections.of(boxes, scores, classes)
    best = []
    for c in wanted:
        top = detections.top_of_class(c)
        if top is not None:
            best.append((c, boxes[top], float(scores[top])))
    return best


def truth_and_boxes_picture(
    image: Tensor,
    gt_boxes: Tensor,
    gt_classes: Sequence[int],
    boxes: Sequence[tuple[int, Tensor, float]],
    class_names: Sequence[str],
) -> Tensor:
    """The ``uint8`` ``3xHxW`` image with its GT boxes (white, class name) and ``boxes``
    (``(class, box, score)``: class colour, name and score; drawn last, on top); small images
    are enlarged as in ``draw_boxes``. The box pictures and ``wsl.retrain``'s pseudo-box
    pictures."""
    drawn = [gt_boxes.float().reshape(-1, 4), *(box[None].float() for _, box, _ in boxes)]
    labels = [class_names[c] for c in gt_classes]
    labels += [f"{class_names[c]} {score:.3g}" for c, _, score in boxes]
    colours = [GT_COLOUR] * len(gt_classes) + [PALETTE[c % len(PALETTE)] for c, _, _ in boxes]
    return draw_boxes(image, torch.cat(drawn), labels=labels, colors=colours)


def box_picture(
    image: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    detections: tuple[Tensor, Tensor, Tensor],
    class_names: Sequence[str],
) -> Tensor:
    """The ``uint8`` ``3xHxW`` image with its GT boxes and the top detection of each GT class
    (:func:`truth_and_boxes_picture`)."""
    present = sorted(set(gt_classes.tolist()))
    top = top_box_per_class(*(t.detach().cpu() for t in detections), present)
    return truth_and_boxes_picture(image, gt_boxes, gt_classes.tolist(), top, class_names)


class BoxPictures(pl.Callback):
    """Draw the top box per present class on ``num_images`` fixed images at train start and end.

    Args:
        num_images: how many images (drawn once with ``seed`` from the split).
        output_dir: folder for the PNG files (``None``: loggers only).
        split: the datamodule's split (``None``: its validation split).
        seed: picks the images.
    """

    def __init__(
        self,
        num_images: int = 4,
        output_dir: str | None = None,
        split: str | None = None,
        seed: int = 0,
    ) -> None:
        self.num_images = num_images
        self.output_dir = Path(output_dir) if output_dir else None
        self.split = split
        self.seed = seed
        self.split_name = ""
        self.dataset: VOCDataset | None = None
        self.loader: DataLoader | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.split_name, self.dataset = split_dataset(trainer, self.split)
        indices = fixed_subset(len(self.dataset), self.num_images, self.seed)
        self.loader = subset_loader(trainer, self.dataset, indices)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.draw(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.draw(trainer, pl_module)

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[str]:
        """Draw the pictures at the current step; return the tags logged (none off rank 0)."""
        if not trainer.is_global_zero or self.loader is None or self.dataset is None:
            return []
        step, tags = trainer.global_step, []
        for batch in self.loader:
            if batch is None:
                continue
            by_source = run_in_eval_mode(trainer, pl_module, batch, pl_module.detections_by_source)
            for j in range(len(batch["image_id"])):
                record = self.dataset.index[batch["index"][j]]
                image = read_rgb_tensor(record.image_path)
                pictures = [
                    box_picture(
                        image,
                        batch["original_gt_boxes"][j],
                        batch["gt_classes"][j],
                        detections[j],
                        self.dataset.index.classes,
                    )
                    for detections in by_source.values()
                ]
                picture = (
                    pictures[0] if len(pictures) == 1 else side_by_side(pictures, [*by_source])
                )
                tag = f"boxes/{self.split_name}/{record.image_id}"
                log_image(trainer.loggers, tag, picture, step=step)
                if self.output_dir is not None:
                    parts = (self.split_name, f"step_{step}", f"{record.image_id}.png")
                    save_png(picture, contained_path(self.output_dir / "boxes", *parts))
                tags.append(tag)
        return tags
