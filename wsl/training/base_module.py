"""What every model family shares: :class:`WSLModule`, the training base.

A family (``LocalizerModule``, ``WSDDNModule``, ...) subclasses it and adds only its loss, its
inference and its own metrics. Written once here:

- **Classification metrics** per stage (``train``/``val``/``test``): one accumulator each
  (:class:`~wsl.evaluation.classification.MultilabelClassificationMetrics`), fed by
  :meth:`WSLModule.update_classification` and logged at each epoch end as
  ``<stage>/cls_mAP``.
- **The non-finite loss guard**: :meth:`WSLModule.accept_loss` skips and counts a NaN/inf
  training loss (``train/skipped_steps``, :class:`~wsl.training.nonfinite.NonFiniteLossGuard`).
- **The test results**: each test step hands its detections to :meth:`WSLModule.record_test`;
  the test end computes the VOC07 detection mAP (``det_mAP``; with ``all_point_ap`` also
  ``det_mAP_allpoint``), CorLoc (on a split other than ``test``, or always when the family sets
  :attr:`WSLModule.corloc_on_test_split`) and the classification mAP (``cls_mAP``), logs them as
  ``test/<name>`` and fills :attr:`WSLModule.test_results`, which ``metrics.json``,
  ``per_class.csv`` and the run report are written from. A family adds its own metrics in
  :meth:`WSLModule.extra_test_results` (the Localizer: ``pointing``, ``metric2``).
- **The optimizer and scheduler** (:meth:`WSLModule.configure_optimizers`): ``_target_``
  configs; optimizer keys set to ``None`` are left out, and ``bias_weight_decay=false`` puts
  the biases in a parameter group without weight decay (as WSDDN's ``wsddn_init.m``), at
  :attr:`WSLModule.bias_lr_mult` times the learning rate (a family that sets it: OICR/PCL's
  ``model.bias_lr_mult``). A scheduler config with a ``schedulers`` list
  (``torch.optim.lr_scheduler.ChainedScheduler``) builds each of them on the optimizer first
  (:func:`build_scheduler`): e.g. pcl.pytorch's linear warm-up then its step decay.

Metric names are one per quantity, the same for every family (README, "Metric names").

The network comes from the config: ``model.net`` is a ``_target_`` config of an
``nn.Module`` taking ``num_classes`` (:func:`build_net`), so a new head is a model file and a
YAML; the checkpoint's stored config rebuilds it (``weights_only=True`` loading).

A family implements ``detect(batch)`` (each image's ``(boxes, scores, classes)``, boxes in
0-based inclusive pixels of the image on disk, best first) and sets ``needs_proposals`` (whether
a batch must carry ``proposals``); ``wsl.evaluate`` (through the test step), ``wsl.predict``,
``wsl.load(...).detect`` and the box-picture and periodic-evaluation callbacks use only these,
with no per-family dispatch. ``detect_with_evidence`` adds what a family can show of its class
decision (the Localizer: class probabilities and heatmaps, which ``wsl.predict`` draws).

Hooks of a detector family built on WSDDN (OICR, PCL): ``WSDDNModule.loss`` (named loss terms)
and ``WSDDNModule.region_scores_for_detection`` (the test-time region scores), see
:mod:`wsl.training.wsddn_module`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from wsl.evaluation.classification import MultilabelClassificationMetrics
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.evaluation.per_image import gather_by_image
from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.structures.detections import Detections
from wsl.training.nonfinite import NonFiniteLossGuard

# class probabilities (C,) and heatmaps (C, h, w) in [0, 1] of one image, on the CPU
ClassEvidence = tuple[Tensor, Tensor]
STAGES = ("train", "val", "test")


class WSLModule(pl.LightningModule):
    """The training base of every model family (see the module docstring).

    A subclass calls ``super().__init__(...)`` first, then ``self.save_hyperparameters()``
    (so the checkpoint holds the subclass's arguments).

    Args:
        class_names: class names in label order (from the data).
        optimizer: a ``_target_`` config of a ``torch.optim`` optimizer (without params); keys
            set to ``None`` are left out.
        scheduler: a ``_target_`` config of a ``torch.optim.lr_scheduler``, or ``None``.
        bias_weight_decay: apply the optimizer's weight decay to biases too (false: a second
            parameter group, the biases, with ``weight_decay`` 0).
        all_point_ap: also report VOC2010 all-point detection AP (``det_mAP_allpoint``) beside
            VOC07's 11-point ``det_mAP``.
        metric2: the classification accumulators' thresholded metric (``recall`` or ``fbeta``).
        max_nonfinite_steps: stop after this many NaN/inf losses in a row (each is skipped).
    """

    needs_proposals: bool = False  # whether a batch must carry each image's proposals
    corloc_on_test_split: bool = False  # report CorLoc on the ``test`` split too
    bias_lr_mult: float = 1.0  # learning-rate factor of the biases (1: one group, as before)

    def __init__(
        self,
        class_names: Sequence[str],
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        bias_weight_decay: bool = True,
        all_point_ap: bool = False,
        metric2: str = "recall",
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.optimizer_config = dict(optimizer or {})
        self.scheduler_config = dict(scheduler) if scheduler else None
        self.bias_weight_decay = bias_weight_decay
        self.all_point_ap = all_point_ap
        # One accumulator per stage (a ModuleDict cannot have a "train" key: Module.train).
        for stage in STAGES:
            accumulator = MultilabelClassificationMetrics(len(self.class_names), metric2)
            setattr(self, f"{stage}_metrics", accumulator)
        self.loss_guard = NonFiniteLossGuard(max_nonfinite_steps)
        self.test_results: dict[str, Any] = {}

    # -- classification -------------------------------------------------------------------

    def stage_metrics(self, stage: str) -> MultilabelClassificationMetrics:
        """The classification-metric accumulator of ``train``, ``val`` or ``test``."""
        return getattr(self, f"{stage}_metrics")

    def update_classification(self, stage: str, batch: Mapping[str, Any], scores: Tensor) -> None:
        """Add the batch's image-level class probabilities ``scores`` (N, C) to ``stage``."""
        self.stage_metrics(stage).update(
            batch["image_id"], scores.detach().float(), batch["labels"], batch["label_weights"]
        )

    def log_classification(self, stage: str) -> dict[str, Tensor]:
        """Log ``<stage>/cls_mAP`` (and what :meth:`classification_logs` adds), reset the
        accumulator and return its result."""
        result = self.stage_metrics(stage).compute()
        self.log(f"{stage}/cls_mAP", result["mAP"], sync_dist=False)
        for name, value in self.classification_logs(result).items():
            self.log(f"{stage}/{name}", value, sync_dist=False)
        self.stage_metrics(stage).reset()
        return result

    def classification_logs(self, result: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A family's own classification scalars, logged beside ``cls_mAP`` (none here)."""
        return {}

    def on_train_epoch_end(self) -> None:
        self.log_classification("train")

    def on_validation_epoch_end(self) -> None:
        self.log_classification("val")

    # -- inference --------------------------------------------------------------------------

    def detect(self, batch: Mapping[str, Any]) -> list[Detections]:
        """Each image's ``(boxes (K, 4), scores (K,), classes (K,))``: boxes in 0-based
        inclusive pixels of ``batch["original_size"]``, best first; in eval mode without
        gradients, the mode restored after. A batch carries ``image``, ``original_size``,
        ``input_size`` and, when :attr:`needs_proposals`, ``proposals``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement detect(batch)")

    def detections_by_source(self, batch: Mapping[str, Any]) -> dict[str, list[Detections]]:
        """Detections of ``batch`` by each of the model's sources, by name, for pictures that
        compare them on the same images: here :meth:`detect`'s alone (``"model"``); a
        refinement family adds WSDDN's beside its last stream's."""
        return {"model": self.detect(batch)}

    def detect_with_evidence(
        self, batch: Mapping[str, Any]
    ) -> tuple[list[Detections], list[ClassEvidence | None]]:
        """:meth:`detect` and, per image, what the family can show of its class decision
        (``None`` here; the Localizer: class probabilities and heatmaps), from one forward
        pass; ``wsl.predict`` draws it."""
        detections = self.detect(batch)
        return detections, [None] * len(detections)

    # -- the non-finite loss guard ----------------------------------------------------------

    def accept_loss(self, loss: Tensor) -> bool:
        """Whether the training step may use ``loss``: false (the step is skipped and counted
        in ``train/skipped_steps``) when it is NaN or infinite."""
        accepted = self.loss_guard.accept(loss.detach(), self.global_step)
        self.log("train/skipped_steps", float(self.loss_guard.skipped), on_step=True)
        return accepted

    # -- test results -----------------------------------------------------------------------

    def _corloc_split(self) -> bool:
        """CorLoc is reported on the images a model learns from, i.e. a split other than test
        (or on any split when the family says so)."""
        if self.corloc_on_test_split:
            return True
        datamodule = getattr(self.trainer, "datamodule", None)
        return datamodule is not None and datamodule.splits["test"] != "test"

    def on_test_epoch_start(self) -> None:
        self.test_evaluator = VOCDetectionEvaluator(self.class_names)
        self.test_corloc = CorLocEvaluator(self.class_names) if self._corloc_split() else None
        self.test_detections: list[tuple[str, Detections]] = []

    def record_test(self, batch: Mapping[str, Any], detections: Sequence[Detections]) -> None:
        """Score one test batch's ``detections`` against its ground truth and keep them."""
        ground_truths = ground_truths_of(batch)
        self.test_evaluator.process(batch["image_id"], detections, ground_truths)
        if self.test_corloc is not None:
            self.test_corloc.process(batch["image_id"], detections, ground_truths)
        for image_id, found in zip(batch["image_id"], detections, strict=True):
            self.test_detections.append((image_id, tuple(t.cpu() for t in found)))

    def extra_test_results(
        self, classification: Mapping[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        """A family's own test metrics and per-class columns (logged as ``test/<name>``), from
        its own evaluators and the test split's ``classification`` result."""
        return {}, {}

    def on_test_epoch_end(self) -> None:
        classification = self.log_classification("test")
        detection = self.test_evaluator.evaluate()
        metrics: dict[str, float] = {
            "cls_mAP": float(classification["mAP"]),
            "det_mAP": detection["mAP"],
        }
        per_class: dict[str, dict[str, Any]] = {
            "cls_AP": dict(
                zip(self.class_names, classification["ap_per_class"].tolist(), strict=True)
            ),
            "det_AP": detection["ap_per_class"],
        }
        if self.all_point_ap:
            metrics["det_mAP_allpoint"] = detection["mAP_allpoint"]
            per_class["det_AP_allpoint"] = detection["ap_per_class_allpoint"]
        if self.test_corloc is not None:
            corloc = self.test_corloc.evaluate()
            metrics["CorLoc"] = corloc["CorLoc"]
            per_class["CorLoc"] = corloc["corloc_per_class"]
        extra_metrics, extra_per_class = self.extra_test_results(classification)
        metrics.update(extra_metrics)
        per_class.update(extra_per_class)
        logged = {"cls_mAP", *self.classification_logs(classification)}  # at the epoch end
        for name, value in metrics.items():
            if name not in logged:
                self.log(f"test/{name}", value)
        detections = gather_by_image(self.test_detections)
        self.test_results = {
            "metrics": metrics,
            "per_class": per_class,
            "curves": detection["curves"],
            "detections": ([i for i, _ in detections], [d for _, d in detections]),
        }

    # -- optimizer --------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        # Keys set to null are left out, so a config can switch optimizer by merging (the demo's
        # Adam sets SGD's momentum to null).
        settings = {k: v for k, v in self.optimizer_config.items() if v is not None}
        # _partial_: Hydra would turn the parameter groups (dicts) into configs
        optimizer = hydra.utils.instantiate(settings, _partial_=True)(self.parameter_groups())
        if not self.scheduler_config:
            return optimizer
        scheduler = build_scheduler(self.scheduler_config, optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trained parameters: one group, or, without ``bias_weight_decay`` or with a
        :attr:`bias_lr_mult` other than 1, the weights and the biases (``weight_decay`` 0
        without ``bias_weight_decay``, as ``wsddn_init.m``; ``lr`` times ``bias_lr_mult``, as
        Caffe's ``lr_mult: 2`` on biases and pcl.pytorch's ``SOLVER.BIAS_DOUBLE_LR``)."""
        trained = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        if self.bias_weight_decay and self.bias_lr_mult == 1:
            return [{"params": [p for _, p in trained]}]
        biases: dict[str, Any] = {"params": [p for n, p in trained if n.endswith(".bias")]}
        if not self.bias_weight_decay:
            biases["weight_decay"] = 0.0
        if self.bias_lr_mult != 1:
            biases["lr"] = self.optimizer_config["lr"] * self.bias_lr_mult
        return [{"params": [p for n, p in trained if not n.endswith(".bias")]}, biases]


def build_scheduler(
    config: Mapping[str, Any], optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``config`` (a ``_target_`` config) on ``optimizer``. A ``schedulers``
    list (``ChainedScheduler``) is built first, each on ``optimizer``, and passed built: Hydra's
    recursion would build them without it."""
    if "schedulers" not in config:
        return hydra.utils.instantiate(config, optimizer=optimizer)
    children = [build_scheduler(child, optimizer) for child in config["schedulers"]]
    rest = {k: v for k, v in config.items() if k != "schedulers"}
    # _partial_: Hydra would turn the built schedulers into configs
    return hydra.utils.instantiate(rest, _partial_=True)(schedulers=children, optimizer=optimizer)


def build_net(net: Mapping[str, Any] | None, default_target: str, num_classes: int) -> nn.Module:
    """The network of ``net``, a ``_target_`` config (as lightning-hydra-template's ``net``),
    built for ``num_classes``; a config without ``_target_`` (a checkpoint written before
    ``model.net._target_``) builds ``default_target``, the family's own network."""
    settings = {"_target_": default_target, **(net or {})}
    return hydra.utils.instantiate(settings, num_classes=num_classes)


def ground_truths_of(batch: Mapping[str, Any]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Each image's GT ``(boxes, classes, difficult)`` in pixels of the image on disk."""
    return list(
        zip(batch["original_gt_boxes"], batch["gt_classes"], batch["gt_difficult"], strict=True)
    )


@contextmanager
def eval_mode(module: pl.LightningModule) -> Iterator[None]:
    """``module`` in eval mode and without gradients, its mode restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)
