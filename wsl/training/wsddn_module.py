"""Training and evaluation of WSDDN (Bilen & Vedaldi, CVPR 2016).

**Loss.** Each step scores the batch's proposals (:class:`~wsl.models.wsddn.WSDDN`) and compares
the image scores with the image labels by BCE. The objective is the MatConvNet original's, per
image: BCE *summed* over classes (``wsddn_loss`` is a mean over N x C, so it is multiplied by
C) plus ``spatial_reg_weight`` times the spatial regulariser, and *summed* over the batch's
images, so that a batch of N images makes the step N single-image steps would (to first order):
the original's (and the course's) batch of one image and learning rate (1e-5) carry over to any
batch size. ``train/loss`` logs the per-image value (the objective divided by N).

**Metrics.** Per epoch: the classification mAP of the image scores (``train/cls_mAP``,
``val/cls_mAP``); with ``val_detection``, the VOC detection mAP on the validation split
(``val/mAP``, from the validation forward pass, without test-time augmentation). The test
reports the detection mAP (``test/mAP``: VOC07 11-point; with ``all_point_ap`` also
``test/mAP_allpoint``, VOC2010's all-point AP, which WSDDN's own code reports:
``wsddnVOCevaldet.m``), the classification mAP and, when the test split is not ``test`` (e.g.
``trainval``), CorLoc; ``test_results`` also carries every detection, for the devkit results
files.

**Optimizer.** ``bias_weight_decay=false`` puts the biases in a parameter group without weight
decay, as ``wsddn_init.m`` sets ``weightDecay = 0`` on every bias. The released code gives every
parameter the same learning rate (its ImageNet models carry no per-layer ``learningRate``, so
DagNN's default 1 applies; no 2x on biases) and trains conv1 too (``model.net.freeze_conv1``).

**Mixed precision.** Under ``precision=bf16-mixed`` the backbone, fc6 and fc7 run under
autocast; the heads (fc8c, fc8d) and both softmaxes run in float32 (``WSDDN.forward``), so
region and image scores are float32; the BCE and the regulariser are computed outside
autocast, in float32 (CUDA autocast refuses ``binary_cross_entropy``).

**Non-finite losses.** A diverged network gives NaN scores; ``wsddn_loss`` turns them into a
NaN loss instead of BCE's error, and the step is skipped and counted
(``train/skipped_steps``, :class:`~wsl.training.nonfinite.NonFiniteLossGuard`) as for the
Localizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from torch import Tensor

from wsl.data.transforms import boxes_to_original
from wsl.evaluation.classification import MultilabelClassificationMetrics
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.evaluation.per_image import gather_by_image
from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.models.wsddn import EPS, WSDDN, WSDDNOutput, spatial_regulariser, wsddn_loss
from wsl.training.detections import (
    DetectionConfig,
    TTAConfig,
    region_detections,
    view_of_batch,
)
from wsl.training.loss_scale import sum_over_global_batch
from wsl.training.nonfinite import NonFiniteLossGuard

Detections = tuple[Tensor, Tensor, Tensor]  # boxes (K, 4), scores (K,), classes (K,)


class WSDDNModule(pl.LightningModule):
    """WSDDN and how it learns from image-level labels (see the module docstring).

    Args:
        class_names: class names in label order (from the data).
        net: keyword arguments of :class:`~wsl.models.wsddn.WSDDN` (backbone, weights, ...).
        optimizer: a ``_target_`` config of a ``torch.optim`` optimizer (without params); keys
            set to ``None`` are left out.
        scheduler: a ``_target_`` config of a ``torch.optim.lr_scheduler``, or ``None``.
        spatial_reg_weight: weight of the spatial regulariser (0: off; the original: 1e-4).
        inference: keyword arguments of :class:`~wsl.training.detections.DetectionConfig`.
        tta: keyword arguments of :class:`~wsl.training.detections.TTAConfig`
            (``None``: the batch as it is).
        all_point_ap: also report VOC2010 all-point AP (``mAP_allpoint``) beside VOC07's
            11-point ``mAP``.
        bias_weight_decay: apply the optimizer's weight decay to biases too (false: no decay
            on biases, as ``wsddn_init.m``).
        val_detection: compute the detection mAP of the validation split every epoch.
        max_nonfinite_steps: stop after this many NaN/inf losses in a row (each is skipped).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        net: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        spatial_reg_weight: float = 0.0,
        inference: Mapping[str, Any] | None = None,
        tta: Mapping[str, Any] | None = None,
        all_point_ap: bool = False,
        val_detection: bool = True,
        max_nonfinite_steps: int = 10,
        bias_weight_decay: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.net = WSDDN(num_classes=len(self.class_names), **(net or {}))
        self.detection_config = DetectionConfig(**(inference or {}))
        self.tta = TTAConfig(**(tta or {}))
        # One accumulator per stage (a ModuleDict cannot have a "train" key: Module.train).
        self.train_metrics = MultilabelClassificationMetrics(len(self.class_names))
        self.val_metrics = MultilabelClassificationMetrics(len(self.class_names))
        self.test_metrics = MultilabelClassificationMetrics(len(self.class_names))
        self.test_results: dict[str, Any] = {}
        self.loss_guard = NonFiniteLossGuard(max_nonfinite_steps)

    def stage_metrics(self, stage: str) -> MultilabelClassificationMetrics:
        """The classification-metric accumulator of ``train``, ``val`` or ``test``."""
        return getattr(self, f"{stage}_metrics")

    def forward(
        self, images: Tensor, proposals: list[Tensor], proposal_scores: list[Any] | None = None
    ) -> WSDDNOutput:
        """WSDDN on ``images`` and their ``proposals``; ``proposal_scores`` are used only when
        the network uses them (a batch from files without scores has ``None`` entries)."""
        if not self.net.use_proposal_scores:
            proposal_scores = None
        elif proposal_scores is not None and any(s is None for s in proposal_scores):
            proposal_scores = None  # the network says what is missing
        return self.net(images, proposals, proposal_scores)

    def _forward_batch(self, batch: dict[str, Any]) -> WSDDNOutput:
        return self(batch["image"], batch["proposals"], batch.get("proposal_scores"))

    def _bce(self, output: WSDDNOutput, batch: dict[str, Any]) -> Tensor:
        """Per-image BCE summed over classes, averaged over the batch's images (float32)."""
        with torch.autocast(self.device.type, enabled=False):
            image_scores, labels = output.image_scores.float(), batch["labels"].float()
            return labels.shape[1] * wsddn_loss(image_scores, labels, batch["label_weights"])

    def _spatial_regulariser(self, output: WSDDNOutput, batch: dict[str, Any]) -> Tensor:
        """The spatial regulariser, averaged over the batch's images (float32)."""
        with torch.autocast(self.device.type, enabled=False):
            return spatial_regulariser(
                output.features.float(),
                output.region_scores.float(),
                torch.cat(batch["proposals"]).to(self.device),
                output.region_image,
                batch["labels"],
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        output = self._forward_batch(batch)
        num_images = len(batch["image"])
        per_image = self._bce(output, batch)
        if self.hparams.spatial_reg_weight:
            regulariser = self._spatial_regulariser(output, batch)
            self.log("train/spatial_reg", regulariser, batch_size=num_images)
            per_image = per_image + self.hparams.spatial_reg_weight * regulariser
        accepted = self.loss_guard.accept(per_image.detach(), self.global_step)
        self.log("train/skipped_steps", float(self.loss_guard.skipped), on_step=True)
        if not accepted:
            return None
        self.train_metrics.update(
            batch["image_id"], output.image_scores.detach().float(), batch["labels"],
            batch["label_weights"],
        )  # fmt: skip
        self.log(
            "train/loss", per_image, on_step=True, on_epoch=True, prog_bar=True,
            batch_size=num_images,
        )  # fmt: skip
        return sum_over_global_batch(per_image, num_images, self._trainer)  # any k, any a

    def _detection_evaluator(self) -> VOCDetectionEvaluator:
        return VOCDetectionEvaluator(self.class_names)  # VOC07 11-point; all-point beside it

    def on_validation_epoch_start(self) -> None:
        self.val_evaluator = self._detection_evaluator() if self.hparams.val_detection else None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = self._forward_batch(batch)
        scores = output.image_scores.detach().float()
        self.val_metrics.update(batch["image_id"], scores, batch["labels"], batch["label_weights"])
        self.log(
            "val/loss", self._bce(output, batch), prog_bar=True, batch_size=len(scores),
            sync_dist=True,
        )  # fmt: skip
        if self.val_evaluator is not None:
            counts = [len(p) for p in batch["proposals"]]
            region_scores = self.detection_scores(output).detach().float().split(counts)
            detections = self.postprocess(batch, region_scores)
            self.val_evaluator.process(batch["image_id"], detections, _ground_truths(batch))

    def _log_classification(self, stage: str) -> dict[str, Tensor]:
        result = self.stage_metrics(stage).compute()
        self.log(f"{stage}/cls_mAP", result["mAP"], sync_dist=False)
        self.stage_metrics(stage).reset()
        return result

    def on_train_epoch_end(self) -> None:
        self._log_classification("train")

    def on_validation_epoch_end(self) -> None:
        self._log_classification("val")
        if self.val_evaluator is not None:
            self.log("val/mAP", self.val_evaluator.evaluate()["mAP"], sync_dist=False)

    def detection_scores(self, output: WSDDNOutput) -> Tensor:
        """The (R, C) region scores that detections rank (WSDDN's; a refinement family's own)."""
        return output.region_scores

    def region_scores(self, batch: dict[str, Any]) -> list[Tensor]:
        """Each image's region scores (K_i, C) in float32, averaged over the test-time views
        (:attr:`tta`); regions are the batch's proposals, in their order."""
        totals: Tensor | None = None
        views = self.tta.views()
        for scale, flipped in views:
            images, proposals = view_of_batch(
                batch["image"].to(self.device),
                [p.to(self.device) for p in batch["proposals"]],
                batch["input_size"],
                batch["original_size"],
                scale,
                flipped,
                self.tta.max_size,
            )
            output = self(images, proposals, batch.get("proposal_scores"))
            scores = self.detection_scores(output).float()
            totals = scores if totals is None else totals + scores
        assert totals is not None  # there is always at least one view
        return list((totals / len(views)).split([len(p) for p in batch["proposals"]]))

    def postprocess(
        self, batch: dict[str, Any], region_scores: Sequence[Tensor], num_views: int = 1
    ) -> list[Detections]:
        """Per image: the proposals in pixels of the image on disk, scored by ``region_scores``
        (averaged over ``num_views`` views), thresholded, NMS-ed and cut to the top k
        (:attr:`detection_config`)."""
        detections = []
        for proposals, scores, input_size, original_size in zip(
            batch["proposals"], region_scores, batch["input_size"], batch["original_size"],
            strict=True,
        ):  # fmt: skip
            boxes = boxes_to_original(proposals.to(scores), input_size, original_size)
            detections.append(region_detections(boxes, scores, self.detection_config, num_views))
        return detections

    @torch.no_grad()
    def detect(self, batch: dict[str, Any]) -> list[Detections]:
        """Detections of every image of ``batch`` (a ``VOCProposalsDataModule`` batch):
        ``(boxes (K, 4) 0-based inclusive pixels of the image on disk, scores (K,),
        classes (K,))``, best first, on the model's device. Runs in eval mode (restoring the
        mode after) without gradients, with the test-time augmentation of :attr:`tta`."""
        was_training = self.training
        self.eval()
        try:
            return self.postprocess(batch, self.region_scores(batch), len(self.tta.views()))
        finally:
            self.train(was_training)

    def on_test_epoch_start(self) -> None:
        self.test_evaluator = self._detection_evaluator()
        self.test_corloc = CorLocEvaluator(self.class_names) if self._corloc_split() else None
        self.test_detections: list[tuple[str, Detections]] = []

    def _corloc_split(self) -> bool:
        """CorLoc is reported on the images a model learns from, i.e. a split other than test."""
        datamodule = getattr(self.trainer, "datamodule", None)
        return datamodule is not None and datamodule.splits["test"] != "test"

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        region_scores = self.region_scores(batch)
        image_scores = torch.stack([s.sum(dim=0) for s in region_scores]).clamp(EPS, 1 - EPS)
        self.test_metrics.update(
            batch["image_id"], image_scores, batch["labels"], batch["label_weights"]
        )
        detections = self.postprocess(batch, region_scores, len(self.tta.views()))
        ground_truths = _ground_truths(batch)
        self.test_evaluator.process(batch["image_id"], detections, ground_truths)
        if self.test_corloc is not None:
            self.test_corloc.process(batch["image_id"], detections, ground_truths)
        for image_id, found in zip(batch["image_id"], detections, strict=True):
            self.test_detections.append((image_id, tuple(t.cpu() for t in found)))

    def on_test_epoch_end(self) -> None:
        classification = self._log_classification("test")
        detection = self.test_evaluator.evaluate()
        self.log("test/mAP", detection["mAP"])
        metrics = {"mAP": detection["mAP"], "cls_mAP": float(classification["mAP"])}
        per_class = {
            "AP": detection["ap_per_class"],
            "AP_cls": dict(
                zip(self.class_names, classification["ap_per_class"].tolist(), strict=True)
            ),
        }
        if self.hparams.all_point_ap:
            self.log("test/mAP_allpoint", detection["mAP_allpoint"])
            metrics["mAP_allpoint"] = detection["mAP_allpoint"]
            per_class["AP_allpoint"] = detection["ap_per_class_allpoint"]
        if self.test_corloc is not None:
            corloc = self.test_corloc.evaluate()
            self.log("test/CorLoc", corloc["CorLoc"])
            metrics["CorLoc"] = corloc["CorLoc"]
            per_class["CorLoc"] = corloc["corloc_per_class"]
        detections = gather_by_image(self.test_detections)
        self.test_results = {
            "metrics": metrics,
            "per_class": per_class,
            "curves": detection["curves"],
            "detections": ([i for i, _ in detections], [d for _, d in detections]),
        }

    def configure_optimizers(self) -> Any:
        # Keys set to null are left out, so a config can switch optimizer by merging (the demo's
        # Adam sets SGD's momentum to null).
        settings = {k: v for k, v in self.hparams.optimizer.items() if v is not None}
        # _partial_: Hydra would turn the parameter groups (dicts) into configs
        optimizer = hydra.utils.instantiate(settings, _partial_=True)(self._parameter_groups())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = hydra.utils.instantiate(self.hparams.scheduler, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """The trained parameters: one group, or, without ``bias_weight_decay``, the weights
        and the biases (``weight_decay`` 0), as ``wsddn_init.m``."""
        trained = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        if self.hparams.bias_weight_decay:
            return [{"params": [p for _, p in trained]}]
        return [
            {"params": [p for n, p in trained if not n.endswith(".bias")]},
            {"params": [p for n, p in trained if n.endswith(".bias")], "weight_decay": 0.0},
        ]


def _ground_truths(batch: dict[str, Any]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Each image's GT ``(boxes, classes, difficult)`` in pixels of the image on disk."""
    return list(
        zip(batch["original_gt_boxes"], batch["gt_classes"], batch["gt_difficult"], strict=True)
    )
