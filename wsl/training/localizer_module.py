"""Training and evaluation of the Localizer ("Is object localization for free?").

Each step: score maps -> global pooling -> image logits -> BCE with the image labels
(classes ignored by ``data.difficult_labels=ignore`` have weight 0), a mean over the batch:
under DDP and gradient accumulation it is already the mean over the step's images, without a
factor (:mod:`wsl.training.loss_scale`). Metrics per epoch for train and val: classification
mAP (``metric1``) and ``metric2`` over every image of the split, each counted once (see
:mod:`wsl.evaluation.classification`). The test also turns heatmaps into boxes and reports
VOC07 detection AP, CorLoc and the pointing game.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from wsl.evaluation.classification import MultilabelClassificationMetrics
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.evaluation.heatmap_boxes import HeatmapBoxConfig, heatmap_boxes, heatmap_peak
from wsl.evaluation.pointing import PointingGameEvaluator
from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.models.localizer import LocalizerAlexNet, LocalizerAlexNetRobust, LocalizerOutput
from wsl.training.nonfinite import NonFiniteLossGuard


class LocalizerModule(pl.LightningModule):
    """A Localizer and how it learns from image-level labels.

    Args:
        class_names: class names in label order (from the data).
        robust: use :class:`LocalizerAlexNetRobust` (dropout on the maps, chosen pooling).
        net: keyword arguments of the network (``weights``, ``pooling``, ...).
        optimizer: a ``_target_`` config of a ``torch.optim`` optimizer (without params).
        scheduler: a ``_target_`` config of a ``torch.optim.lr_scheduler``, or ``None``.
        metric2: ``recall`` (macro recall at 0.5) or ``fbeta`` (F-beta, beta=2).
        heatmap_boxes: keyword arguments of :class:`HeatmapBoxConfig` (test only).
        pointing_tolerance: pointing-game tolerance in pixels of the original image.
        max_nonfinite_steps: stop after this many NaN/inf losses in a row (each is skipped).
    """

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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names)
        network = LocalizerAlexNetRobust if robust else LocalizerAlexNet
        self.net = network(num_classes=len(self.class_names), **(net or {}))
        # One accumulator per stage (a ModuleDict cannot have a "train" key: Module.train).
        self.train_metrics = MultilabelClassificationMetrics(len(self.class_names), metric2)
        self.val_metrics = MultilabelClassificationMetrics(len(self.class_names), metric2)
        self.test_metrics = MultilabelClassificationMetrics(len(self.class_names), metric2)
        self.box_config = HeatmapBoxConfig(**(heatmap_boxes or {}))
        self.test_results: dict[str, Any] = {}
        self.loss_guard = NonFiniteLossGuard(max_nonfinite_steps)

    def stage_metrics(self, stage: str) -> MultilabelClassificationMetrics:
        """The classification-metric accumulator of ``train``, ``val`` or ``test``."""
        return getattr(self, f"{stage}_metrics")

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
        if stage == "train":
            accepted = self.loss_guard.accept(loss.detach(), self.global_step)
            self.log("train/skipped_steps", float(self.loss_guard.skipped), on_step=True)
            if not accepted:
                return None, output
        scores = torch.sigmoid(output.logits.detach().float())
        self.stage_metrics(stage).update(
            batch["image_id"], scores, batch["labels"], batch["label_weights"]
        )
        self.log(
            f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
            batch_size=len(batch["image"]), sync_dist=stage != "train",
        )  # fmt: skip
        return loss, output

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._classification_step(batch, "train")[0]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._classification_step(batch, "val")

    def _log_classification(self, stage: str) -> dict[str, Any]:
        result = self.stage_metrics(stage).compute()
        self.log(f"{stage}/mAP", result["mAP"], sync_dist=False)
        self.log(f"{stage}/metric2", result["metric2"], sync_dist=False)
        self.stage_metrics(stage).reset()
        return result

    def on_train_epoch_end(self) -> None:
        self._log_classification("train")

    def on_validation_epoch_end(self) -> None:
        self._log_classification("val")

    def on_test_epoch_start(self) -> None:
        self.detection = VOCDetectionEvaluator(self.class_names)
        self.corloc = CorLocEvaluator(self.class_names)
        self.pointing = PointingGameEvaluator(self.class_names, self.hparams.pointing_tolerance)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, output = self._classification_step(batch, "test")
        maps = output.score_maps.detach().float()
        scores = torch.sigmoid(output.logits.detach().float())
        detections, points, ground_truths = [], [], []
        for i, size in enumerate(batch["original_size"]):
            found = heatmap_boxes(maps[i], size, scores[i], self.box_config)
            detections.append((found.boxes, found.scores, found.classes))
            points.append(torch.tensor([heatmap_peak(m, size) for m in maps[i]]))
            ground_truths.append(
                (batch["original_gt_boxes"][i], batch["gt_classes"][i], batch["gt_difficult"][i])
            )
        self.detection.process(batch["image_id"], detections, ground_truths)
        self.corloc.process(batch["image_id"], detections, ground_truths)
        self.pointing.process(batch["image_id"], points, ground_truths)

    def on_test_epoch_end(self) -> None:
        classification = self._log_classification("test")
        detection = self.detection.evaluate()
        corloc = self.corloc.evaluate()
        pointing = self.pointing.evaluate()
        self.log("test/det_mAP", detection["mAP"])
        self.log("test/CorLoc", corloc["CorLoc"])
        self.log("test/pointing", pointing["pointing"])
        self.test_results = {
            "metrics": {
                "mAP": float(classification["mAP"]),
                "metric2": float(classification["metric2"]),
                "det_mAP": detection["mAP"],
                "CorLoc": corloc["CorLoc"],
                "pointing": pointing["pointing"],
            },
            "per_class": {
                "AP_cls": dict(
                    zip(self.class_names, classification["ap_per_class"].tolist(), strict=True)
                ),
                "AP_det": detection["ap_per_class"],
                "CorLoc": corloc["corloc_per_class"],
                "pointing": pointing["pointing_per_class"],
            },
            "curves": detection["curves"],
        }

    def configure_optimizers(self) -> Any:
        optimizer = hydra.utils.instantiate(
            self.hparams.optimizer, params=[p for p in self.parameters() if p.requires_grad]
        )
        if not self.hparams.scheduler:
            return optimizer
        scheduler = hydra.utils.instantiate(self.hparams.scheduler, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
