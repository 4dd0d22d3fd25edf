"""The contract of a model family: what the one training module (``wsl.training.module``) asks.

A family is an ``nn.Module`` built from ``model.net`` (a ``_target_`` config taking
``num_classes``) that subclasses :class:`Family` and gives

- :meth:`Family.step`: the **named losses** of a batch (per image, averaged over the batch's
  images; their sum is minimised), as torchvision's detection models return ``loss_dict`` and
  ``references/detection/engine.py`` sums and logs any model's; with them the image-level class
  probabilities (classification metrics) and, on request, the batch's detections from the same
  forward pass (the validation split's ``det_mAP``);
- :meth:`Family.predict`: a batch's detections as the test makes them (test-time views, NMS)
  in the one detections record (:class:`~wsl.structures.detections.Detections`), the image
  scores, and, where the family has them, class heatmaps (:class:`Prediction`);
- optionally :meth:`Family.detections_by_source`, for pictures that compare its sources.

The training module owns everything else (the step, the non-finite guard, logging, evaluators,
optimizer and scheduler), so a new family is a model file and a YAML. Attributes say what the
data and the trainer must do: :attr:`Family.needs_proposals`,
:attr:`Family.detects_on_validation`, :attr:`Family.loss_reduction`,
:attr:`Family.corloc_on_test_split`, :attr:`Family.default_score_threshold`. A submodule with
``lr_mult`` and ``bias_lr_mult`` attributes (a refinement head) gets its own parameter groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import Tensor, nn

from wsl.structures.detections import Detections

LOSS_REDUCTIONS = ("mean", "sum")


class StepOutput(NamedTuple):
    """What a family gives for a training (or validation) batch of N images."""

    losses: dict[str, Tensor]  # named per-image terms (mean over the N images), summed
    image_scores: Tensor  # (N, C) class probabilities, for the classification metrics
    detections: list[Detections] | None = None  # each image's, when asked for


class Prediction(NamedTuple):
    """What a family finds in a batch of N images at test time."""

    detections: list[Detections]  # each image's, boxes in pixels of the image on disk
    image_scores: Tensor  # (N, C) class probabilities
    heatmaps: list[Tensor] | None = None  # each image's (C, h, w) class heatmaps in [0, 1]


class Family(nn.Module):
    """The base of every model family (see the module docstring)."""

    needs_proposals: bool = False  # a batch must carry each image's ``proposals``
    # the validation step's detections give val/det_mAP (with model.val_detection); the
    # Localizer's heatmap boxes are not worth their time every epoch
    detects_on_validation: bool = False
    # "mean": the losses are a mean over the images, already the step's mean under DDP and
    # accumulation; "sum": a sum over the global batch (wsl.training.loss_scale), so a batch of
    # N images makes the step N single-image steps would (WSDDN's MatConvNet original)
    loss_reduction: str = "mean"
    corloc_on_test_split: bool = False  # report CorLoc on the ``test`` split too
    # the score below which ``wsl.predict`` and ``wsl.load`` hide a box, unless told otherwise
    default_score_threshold: float = 0.05

    def step(self, batch: Mapping[str, Any], detect: bool = False) -> StepOutput:
        """The named losses and image scores of ``batch`` (and its detections if ``detect``)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step(batch)")

    def predict(self, batch: Mapping[str, Any]) -> Prediction:
        """``batch``'s detections as the test makes them; the caller sets eval mode and
        ``no_grad`` (:func:`wsl.training.module.inference_context`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict(batch)")

    def detections_by_source(self, batch: Mapping[str, Any]) -> dict[str, list[Detections]]:
        """Detections of ``batch`` by each of the family's sources, by name (here one:
        ``"model"``, :meth:`predict`'s)."""
        return {"model": self.predict(batch).detections}
