"""Training and evaluation of the Localizer ("Is object localization for free?").

Each step: score maps -> global pooling -> image logits -> BCE with the image labels
(classes ignored by ``data.difficult_labels=ignore`` have weight 0), a mean over the batch:
under DDP and gradient accumulation it is already the mean over the step's images, without a
factor (:mod:`wsl.training.loss_scale`). Metrics per epoch for train and val: classification
mAP (``cls_mAP``) and ``metric2`` over every image of the split, each counted once (see
:mod:`wsl.evaluation.classification`). The test also turns heatmaps into boxes and reports
VOC07 detection AP, CorLoc and the pointing game.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from wsl.evaluation.heatmap_boxes import HeatmapBoxConfig, heatmap_boxes, heatmap_peak
from wsl.evaluation.pointing import PointingGameEvaluator
from wsl.models.localizer import LocalizerAlexNet, LocalizerAlexNetRobust, LocalizerOutput
from wsl.structures.detections import Detections
from wsl.training.base_module import (
    ClassEvidence,
    WSLModule,
    build_net,
    eval_mode,
    ground_truths_of,
)


class LocalizerModule(WSLModule):
    """A Localizer and how it learns from image-level labels.

    The shared parts (classification metrics, the non-finite loss guard, the detection test
    results, the optimizer) are :class:`~wsl.training.base_module.WSLModule`'s; this class adds
    the loss, the boxes read off the heatmaps (:meth:`detect`), ``metric2`` and the pointing
    game.

    Args:
        class_names: class names in label order (from the data).
        robust: without ``net._target_`` (checkpoints written before it), build
            :class:`LocalizerAlexNetRobust` instead of :class:`LocalizerAlexNet`.
        net: a ``_target_`` config of the network (``wsl.models.localizer.LocalizerAlexNet``
            or ``LocalizerAlexNetRobust``) with its keyword arguments (``weights``,
            ``pooling``, ...), :func:`~wsl.training.base_module.build_net`.
        optimizer: a ``_target_`` config of a ``torch.optim`` optimizer (without params).
        scheduler: a ``_target_`` config of a ``torch.optim.lr_scheduler``, or ``None``.
        metric2: ``recall`` (macro recall at 0.5) or ``fbeta`` (F-beta, beta=2).
        heatmap_boxes: keyword arguments of :class:`HeatmapBoxConfig` (test only).
        pointing_tolerance: pointing-game tolerance in pixels of the original image.
        max_nonfinite_steps: stop after this many NaN/inf losses in a row (each is skipped).
        bias_weight_decay: apply weight decay to biases too (false: no decay on biases).
        all_point_ap: also report all-point detection AP (``det_mAP_allpoint``).
    """

    corloc_on_test_split = True

    def __init__(
        self,
        class_names: Sequence[str],
        robust: bool = False,
        net: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        metric2: str = "recall",
        heatmap_boxes: Mapping[str, Any] | None = None,
        pointing_tolerance: float = 18.0,
        max_nonfinite_steps: int = 10,
        bias_weight_decay: bool = True,
        all_point_ap: bool = False,
    ) -> None:
        super().__init__(
            class_names, optimizer, scheduler, bias_weight_decay, all_point_ap, metric2,
            max_nonfinite_steps,
        )  # fmt: skip
        self.save_hyperparameters()
        if robust and net and "_target_" in net:
            raise ValueError(
                "model.robust=true is the old way of choosing the robust network; with "
                "model.net._target_ set, choose it there (model=localizer_robust)"
            )
        network = LocalizerAlexNetRobust if robust else LocalizerAlexNet
        default = f"{network.__module__}.{network.__qualname__}"
        self.net = build_net(net, default, len(self.class_names))
        self.box_config = HeatmapBoxConfig(**(heatmap_boxes or {}))

    def forward(self, images: torch.Tensor) -> LocalizerOutput:
        return self.net(images)

    def _classification_step(
        self, batch: dict[str, Any], stage: str
    ) -> tuple[torch.Tensor | None, LocalizerOutput]:
        """Loss and metric update of one batch; a non-finite training loss gives ``None``."""
        output = self.net(batch["image"])
        loss = F.binary_cross_entropy_with_logits(
            output.logits, batch["labels"], weight=batch["label_weights"]
        )
        if stage == "train" and not self.accept_loss(loss):
            return None, output
        self.update_classification(stage, batch, torch.sigmoid(output.logits.detach().float()))
        self.log(
            f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
            batch_size=len(batch["image"]), sync_dist=stage != "train",
        )  # fmt: skip
        return loss, output

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._classification_step(batch, "train")[0]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._classification_step(batch, "val")

    def classification_logs(self, result: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"metric2": result["metric2"]}

    def heatmap_detections(
        self, batch: Mapping[str, Any], output: LocalizerOutput
    ) -> list[Detections]:
        """Per image: boxes read off every class's heatmap (:attr:`box_config`), in 0-based
        inclusive pixels of the image on disk, scored with the image's class probabilities."""
        maps = output.score_maps.detach().float()
        scores = torch.sigmoid(output.logits.detach().float())
        detections = []
        for i, size in enumerate(batch["original_size"]):
            found = heatmap_boxes(maps[i], size, scores[i], self.box_config)
            detections.append((found.boxes, found.scores, found.classes))
        return detections

    def detect(self, batch: Mapping[str, Any]) -> list[Detections]:
        """Detections of every image of ``batch`` (a ``VOCDataModule`` batch): ``(boxes (K, 4)
        0-based inclusive pixels of the image on disk, scores (K,), classes (K,))`` of every
        class, best first. Runs in eval mode (restoring the mode after) without gradients."""
        return self.detect_with_evidence(batch)[0]

    def detect_with_evidence(
        self, batch: Mapping[str, Any]
    ) -> tuple[list[Detections], list[ClassEvidence | None]]:
        """:meth:`detect` and each image's class probabilities and heatmaps (the sigmoid of
        the score maps), on the CPU, from one forward pass."""
        with eval_mode(self):
            output = self(batch["image"].to(self.device))
        scores = torch.sigmoid(output.logits.float()).cpu()
        heatmaps = torch.sigmoid(output.score_maps.float()).cpu()
        return self.heatmap_detections(batch, output), list(zip(scores, heatmaps, strict=True))

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.pointing = PointingGameEvaluator(self.class_names, self.hparams.pointing_tolerance)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, output = self._classification_step(batch, "test")
        self.record_test(batch, self.heatmap_detections(batch, output))
        maps = output.score_maps.detach().float()
        points = [
            torch.tensor([heatmap_peak(m, size) for m in maps[i]])
            for i, size in enumerate(batch["original_size"])
        ]
        self.pointing.process(batch["image_id"], points, ground_truths_of(batch))

    def extra_test_results(
        self, classification: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        pointing = self.pointing.evaluate()
        metrics = {"metric2": float(classification["metric2"]), "pointing": pointing["pointing"]}
        return metrics, {"pointing": pointing["pointing_per_class"]}
