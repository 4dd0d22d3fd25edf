"""The one training module of every model family: :class:`WSLModule`.

A family is an ``nn.Module`` (:class:`~wsl.models.family.Family`) built from ``model.net``; this
LightningModule owns everything around it, the same for every family:

- **The step.** The family's named losses (:meth:`~wsl.models.family.Family.step`) are summed;
  each is logged as ``train/<name>`` and the sum as ``train/loss`` (per image). A family whose
  ``loss_reduction`` is ``sum`` (WSDDN) trains on the sum over the global batch
  (:func:`~wsl.training.loss_scale.sum_over_global_batch`), one whose reduction is ``mean`` on the
  mean. **The non-finite guard** skips and counts a NaN/inf loss (``train/skipped_steps``,
  :class:`~wsl.training.nonfinite.NonFiniteLossGuard`).
- **Validation.** ``val/loss`` (the training objective on the validation split), ``val/cls_mAP``
  and, with ``val_detection``, ``val/det_mAP`` from the same forward pass (without test-time
  augmentation).
- **Classification metrics** per stage (``train``/``val``/``test``): one accumulator each
  (:class:`~wsl.evaluation.classification.MultilabelClassificationMetrics`) of the family's
  image scores, logged at each epoch end as ``<stage>/cls_mAP`` (and ``<stage>/metric2`` where
  ``metric2`` is set: the Localizer's configs).
- **The test** (:meth:`WSLModule.test_step`): the family's :meth:`~wsl.models.family.Family.predict`
  feeds the VOC07 detection mAP (``det_mAP``; with ``all_point_ap`` also ``det_mAP_allpoint``),
  COCO's AP by pycocotools (``det_AP``, ``det_AP50``, ``det_AP75``, ``det_APs/m/l``, on the
  split's boxes as :func:`~wsl.data.coco_ground_truth.coco_ground_truth` gives them),
  CorLoc (on a split other than ``test``, or always where the family's
  ``corloc_on_test_split``), the classification mAP and, where the family gives heatmaps, the
  pointing game (``pointing``, tolerance ``pointing_tolerance``); all are logged as
  ``test/<name>`` and fill :attr:`WSLModule.test_results`, which ``metrics.json``,
  ``per_class.csv``, the results files and the run report are written from. A split without
  boxes (image tags) gives the classification metrics only, with a warning saying so.
- **Inference** for ``wsl.evaluate``, ``wsl.predict``, ``wsl.load(...).detect`` and the picture
  callbacks: :meth:`WSLModule.detect`, :meth:`WSLModule.detect_with_evidence` and
  :meth:`WSLModule.detections_by_source`, in :func:`inference_context`, with no per-family
  dispatch.
- **The optimizer and scheduler** (:meth:`WSLModule.configure_optimizers`): ``_target_``
  configs; optimizer keys set to ``None`` are left out; ``bias_weight_decay=false`` puts the
  biases in a group without weight decay (as WSDDN's ``wsddn_init.m``), at ``bias_lr_mult``
  times the learning rate (Caffe's ``lr_mult: 2`` on biases, pcl.pytorch's
  ``SOLVER.BIAS_DOUBLE_LR``); a submodule with ``lr_mult``/``bias_lr_mult`` (a refinement head)
  gets its own two groups at those factors of the base rate. A scheduler config with a
  ``schedulers`` list (``ChainedScheduler``) builds each on the optimizer first
  (:func:`build_scheduler`); ``scheduler_interval: step`` steps it every optimizer step, so
  ``MultiStepLR`` milestones and ``LinearLR`` warm-ups count iterations as the authors' solvers.

Metric names are one per quantity, the same for every family (``docs/metrics.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from wsl.data.coco_ground_truth import coco_ground_truth
from wsl.data.split_index import SplitIndex
from wsl.evaluation.classification import MultilabelClassificationMetrics
from wsl.evaluation.coco_detection import COCO_METRICS, COCODetectionEvaluator
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.evaluation.per_image import gather_by_image
from wsl.evaluation.pointing import PointingGameEvaluator
from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.inference.heatmaps import heatmap_peak
from wsl.models.family import LOSS_REDUCTIONS, Family, Prediction
from wsl.structures.detections import Detections
from wsl.structures.evidence import ClassEvidence
from wsl.training.loss_scale import sum_over_global_batch
from wsl.training.nonfinite import NonFiniteLossGuard

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
SCHEDULER_INTERVALS = ("epoch", "step")


class WSLModule(pl.LightningModule):
    """The training module of every family (see the module docstring).

    Args:
        class_names: class names in label order (from the data).
        net: a ``_target_`` config of the family (an ``nn.Module`` taking ``num_classes``).
        optimizer: a ``_target_`` config of a ``torch.optim`` optimizer (without params); keys
            set to ``None`` are left out.
        scheduler: a ``_target_`` config of a ``torch.optim.lr_scheduler``, or ``None``.
        scheduler_interval: ``epoch`` or ``step``: when the scheduler steps.
        bias_weight_decay: apply the optimizer's weight decay to biases too (false: no decay).
        bias_lr_mult: learning-rate factor of the biases (both refinement codes: 2).
        all_point_ap: also report VOC2010 all-point detection AP (``det_mAP_allpoint``).
        metric2: the classification accumulators' thresholded metric (``recall`` or
            ``fbeta``), logged as ``<stage>/metric2``; ``None``: not logged.
        val_detection: compute the detection mAP of the validation split every epoch.
        pointing_tolerance: pointing-game tolerance in pixels of the original image.
        max_nonfinite_steps: stop after this many NaN/inf losses in a row (each is skipped).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        bias_weight_decay: bool = True,
        bias_lr_mult: float = 1.0,
        all_point_ap: bool = False,
        metric2: str | None = None,
        val_detection: bool = True,
        pointing_tolerance: float = 18.0,
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(
                f"model.scheduler_interval must be one of {list(SCHEDULER_INTERVALS)}: "
                f"{scheduler_interval!r}"
            )
        if bias_lr_mult <= 0:
            raise ValueError(f"model.bias_lr_mult must be positive, got {bias_lr_mult}")
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.net = build_family(net, len(self.class_names))
        self.optimizer_config = dict(optimizer or {})
        self.scheduler_config = dict(scheduler) if scheduler else None
        # One accumulator per stage (a ModuleDict cannot have a "train" key: Module.train).
        for stage in STAGES:
            accumulator = MultilabelClassificationMetrics(
                len(self.class_names), metric2 or "recall"
            )
            setattr(self, f"{stage}_metrics", accumulator)
        self.loss_guard = NonFiniteLossGuard(max_nonfinite_steps)
        self.test_results: dict[str, Any] = {}

    @property
    def needs_proposals(self) -> bool:
        """Whether a batch must carry each image's ``proposals`` (the family's)."""
        return self.net.needs_proposals

    @property
    def default_score_threshold(self) -> float:
        """The score below which ``wsl.predict`` and ``wsl.load`` hide a box (the family's)."""
        return self.net.default_score_threshold

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
        """Log ``<stage>/cls_mAP`` (and ``<stage>/metric2``), reset the accumulator and return
        its result."""
        result = self.stage_metrics(stage).compute()
        self.log(f"{stage}/cls_mAP", result["mAP"], sync_dist=False)
        if self.hparams.metric2:
            self.log(f"{stage}/metric2", result["metric2"], sync_dist=False)
        self.stage_metrics(stage).reset()
        return result

    # -- training and validation ----------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        output = self.net.step(batch)
        num_images = len(batch["image"])
        loss = self._log_losses("train", output.losses, num_images)
        if not self.accept_loss(loss):
            return None
        self.update_classification("train", batch, output.image_scores)
        if self.net.loss_reduction == "sum":
            return sum_over_global_batch(loss, num_images, self._trainer)  # any k, any a
        return loss

    def _log_losses(self, stage: str, losses: Mapping[str, Tensor], num_images: int) -> Tensor:
        """The sum of ``losses`` (per image); logs it as ``<stage>/loss`` and, with more than
        one term, each term as ``<stage>/<name>``."""
        total = sum(losses.values())
        assert isinstance(total, Tensor), "a family gives at least one loss"
        on_step = stage == "train"
        if len(losses) > 1:
            for name, value in losses.items():
                self.log(f"{stage}/{name}", value.detach(), on_step=on_step, on_epoch=True,
                         batch_size=num_images, sync_dist=not on_step)  # fmt: skip
        self.log(f"{stage}/loss", total, on_step=on_step, on_epoch=True, prog_bar=True,
                 batch_size=num_images, sync_dist=not on_step)  # fmt: skip
        return total

    def accept_loss(self, loss: Tensor) -> bool:
        """Whether the training step may use ``loss``: false (the step is skipped and counted
        in ``train/skipped_steps``) when it is NaN or infinite."""
        accepted = self.loss_guard.accept(loss.detach(), self.global_step)
        self.log("train/skipped_steps", float(self.loss_guard.skipped), on_step=True)
        return accepted

    def on_train_epoch_end(self) -> None:
        self.log_classification("train")

    def split_index(self, stage: str) -> SplitIndex | None:
        """The index of the split the trainer's datamodule serves for ``stage`` (``fit``,
        ``validate``, ``test``), or ``None`` without such a datamodule."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "dataset"):
            return None
        return datamodule.dataset(datamodule.splits[stage]).index

    def has_boxes(self, stage: str) -> bool:
        """Whether the split of ``stage`` has object boxes (box metrics need them)."""
        index = self.split_index(stage)
        return index is None or index.has_boxes

    def on_validation_epoch_start(self) -> None:
        detect = self.hparams.val_detection and self.net.detects_on_validation
        detect = detect and self.has_boxes("validate")
        self.val_evaluator = VOCDetectionEvaluator(self.class_names) if detect else None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = self.net.step(batch, detect=self.val_evaluator is not None)
        self._log_losses("val", output.losses, len(batch["image"]))
        self.update_classification("val", batch, output.image_scores)
        if self.val_evaluator is not None:
            assert output.detections is not None
            self.val_evaluator.process(
                batch["image_id"], output.detections, ground_truths_of(batch)
            )

    def on_validation_epoch_end(self) -> None:
        self.log_classification("val")
        if self.val_evaluator is not None:
            self.log("val/det_mAP", self.val_evaluator.evaluate()["mAP"], sync_dist=False)

    # -- inference --------------------------------------------------------------------------

    def predict_batch(self, batch: Mapping[str, Any]) -> Prediction:
        """The family's :meth:`~wsl.models.family.Family.predict` in :func:`inference_context`."""
        with inference_context(self):
            return self.net.predict(batch)

    def detect(self, batch: Mapping[str, Any]) -> list[Detections]:
        """Each image's ``(boxes (K, 4), scores (K,), classes (K,))``: boxes in 0-based
        inclusive pixels of ``batch["original_size"]``, best first; in eval mode without
        gradients, the mode restored after. A batch carries ``image``, ``original_size``,
        ``input_size`` and, when :attr:`needs_proposals`, ``proposals``."""
        return self.predict_batch(batch).detections

    def detect_with_evidence(
        self, batch: Mapping[str, Any]
    ) -> tuple[list[Detections], list[ClassEvidence | None]]:
        """:meth:`detect` and, per image, its class evidence (probabilities and heatmaps, on the
        CPU) where the family gives heatmaps (``None`` otherwise), from one prediction."""
        prediction = self.predict_batch(batch)
        if prediction.heatmaps is None:
            return prediction.detections, [None] * len(prediction.detections)
        evidence: list[ClassEvidence | None] = [
            ClassEvidence(scores.cpu(), maps.cpu())
            for scores, maps in zip(prediction.image_scores, prediction.heatmaps, strict=True)
        ]
        return prediction.detections, evidence

    def detections_by_source(self, batch: Mapping[str, Any]) -> dict[str, list[Detections]]:
        """Detections of ``batch`` by each of the family's sources, by name, for pictures that
        compare them on the same images (a refinement family: WSDDN's and its last stream's)."""
        with inference_context(self):
            return self.net.detections_by_source(batch)

    # -- test results -----------------------------------------------------------------------

    def _corloc_split(self) -> bool:
        """CorLoc is reported on the images a model learns from, i.e. a split other than test
        (or on any split when the family says so)."""
        if self.net.corloc_on_test_split:
            return True
        datamodule = getattr(self.trainer, "datamodule", None)
        return datamodule is not None and datamodule.splits["test"] != "test"

    def on_test_epoch_start(self) -> None:
        index = self.split_index("test")
        boxes = index is None or index.has_boxes
        if not boxes:
            log.warning(
                "split %r of %s has no object boxes: the box metrics (det_mAP, det_AP, CorLoc, "
                "pointing) need them and are not computed; the classification metrics are",
                index.split, index.data_dir,
            )  # fmt: skip
        self.test_evaluator = VOCDetectionEvaluator(self.class_names) if boxes else None
        self.test_coco = self.test_ground_truth = None
        if index is not None and boxes:
            self.test_ground_truth = coco_ground_truth(index)
            self.test_coco = COCODetectionEvaluator(
                self.test_ground_truth, index.coco_image_ids(), index.category_ids
            )
        self.test_index = index
        corloc = boxes and self._corloc_split()
        self.test_corloc = CorLocEvaluator(self.class_names) if corloc else None
        self.test_pointing: PointingGameEvaluator | None = None
        self.test_detections: list[tuple[str, Detections]] = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        prediction = self.net.predict(batch)  # Lightning's test loop: eval mode, no gradients
        self.update_classification("test", batch, prediction.image_scores)
        ground_truths = ground_truths_of(batch)
        if self.test_evaluator is not None:
            self.test_evaluator.process(batch["image_id"], prediction.detections, ground_truths)
        if self.test_coco is not None:
            self.test_coco.process(batch["image_id"], prediction.detections)
        if self.test_corloc is not None:
            self.test_corloc.process(batch["image_id"], prediction.detections, ground_truths)
        if prediction.heatmaps is not None and self.test_evaluator is not None:  # needs boxes
            if self.test_pointing is None:
                tolerance = self.hparams.pointing_tolerance
                self.test_pointing = PointingGameEvaluator(self.class_names, tolerance)
            points = [
                torch.tensor([heatmap_peak(m, size) for m in maps])
                for maps, size in zip(prediction.heatmaps, batch["original_size"], strict=True)
            ]
            self.test_pointing.process(batch["image_id"], points, ground_truths)
        for image_id, found in zip(batch["image_id"], prediction.detections, strict=True):
            self.test_detections.append((image_id, found.cpu()))

    def on_test_epoch_end(self) -> None:
        classification = self.log_classification("test")
        metrics: dict[str, float] = {"cls_mAP": float(classification["mAP"])}
        per_class: dict[str, dict[str, Any]] = {
            "cls_AP": dict(
                zip(self.class_names, classification["ap_per_class"].tolist(), strict=True)
            ),
        }
        detection = self.test_evaluator.evaluate() if self.test_evaluator is not None else None
        if detection is not None:
            metrics["det_mAP"] = detection["mAP"]
            per_class["det_AP"] = detection["ap_per_class"]
        if self.test_coco is not None:
            coco = self.test_coco.evaluate()
            metrics.update({f"det_{name}": coco[name] for name in COCO_METRICS})
        if detection is not None and self.hparams.all_point_ap:
            metrics["det_mAP_allpoint"] = detection["mAP_allpoint"]
            per_class["det_AP_allpoint"] = detection["ap_per_class_allpoint"]
        if self.test_corloc is not None:
            corloc = self.test_corloc.evaluate()
            metrics["CorLoc"] = corloc["CorLoc"]
            per_class["CorLoc"] = corloc["corloc_per_class"]
        if self.hparams.metric2:
            metrics["metric2"] = float(classification["metric2"])
        if self.test_pointing is not None:
            pointing = self.test_pointing.evaluate()
            metrics["pointing"] = pointing["pointing"]
            per_class["pointing"] = pointing["pointing_per_class"]
        for name, value in metrics.items():
            if name not in ("cls_mAP", "metric2"):  # logged at the epoch end
                self.log(f"test/{name}", value)
        detections = gather_by_image(self.test_detections)
        self.test_results = {"metrics": metrics, "per_class": per_class}
        if detection is not None:
            self.test_results["curves"] = detection["curves"]
        index = self.test_index
        if index is None or index.devkit_results is not None:
            self.test_results["detections"] = (
                [i for i, _ in detections],
                [d for _, d in detections],
            )
            self.test_results["devkit_results"] = None if index is None else index.devkit_results
        if self.test_coco is not None:
            self.test_results["coco_results"] = self.test_coco.results()
            if index.ground_truth_file is None:  # COCO data: the user's own file
                self.test_results["coco_ground_truth"] = self.test_ground_truth

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
        interval = self.hparams.scheduler_interval
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trained parameters (see the module docstring): one group, or, without
        ``bias_weight_decay`` or with a ``bias_lr_mult`` other than 1, the weights and the
        biases; then, for each submodule with ``lr_mult`` (a refinement head), its weights at
        ``lr_mult`` and its biases at ``bias_lr_mult`` times the base learning rate."""
        lr = self.optimizer_config.get("lr")
        heads = [m for m in self.net.modules() if hasattr(m, "lr_mult") and m is not self.net]
        in_heads = {id(p) for m in heads for p in m.parameters()}
        trained = [
            (n, p) for n, p in self.named_parameters() if p.requires_grad and id(p) not in in_heads
        ]
        bias_lr_mult = self.hparams.bias_lr_mult
        if self.hparams.bias_weight_decay and bias_lr_mult == 1:
            groups = [{"params": [p for _, p in trained]}]
        else:
            groups = _weights_and_biases(
                trained, lr, 1.0, bias_lr_mult, self.hparams.bias_weight_decay
            )
        for head in heads:
            named = [(n, p) for n, p in head.named_parameters() if p.requires_grad]
            groups += _weights_and_biases(
                named, lr, head.lr_mult, head.bias_lr_mult, self.hparams.bias_weight_decay, True
            )
        return groups


def _weights_and_biases(
    named: Sequence[tuple[str, nn.Parameter]], lr: float | None, lr_mult: float,
    bias_lr_mult: float, bias_weight_decay: bool, set_weight_lr: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Two parameter groups: the weights (at ``lr_mult`` times ``lr`` if ``set_weight_lr``) and
    the biases (at ``bias_lr_mult`` times ``lr`` unless 1, without weight decay unless
    ``bias_weight_decay``)."""
    weights: dict[str, Any] = {"params": [p for n, p in named if not n.endswith(".bias")]}
    biases: dict[str, Any] = {"params": [p for n, p in named if n.endswith(".bias")]}
    if set_weight_lr:
        weights["lr"] = lr * lr_mult
    if set_weight_lr or bias_lr_mult != 1:
        biases["lr"] = lr * bias_lr_mult
    if not bias_weight_decay:
        biases["weight_decay"] = 0.0
    return [weights, biases]


def build_family(net: Mapping[str, Any], num_classes: int) -> Family:
    """The family of ``net`` (a ``_target_`` config, as lightning-hydra-template's ``net``),
    built for ``num_classes``; raises unless it is a :class:`~wsl.models.family.Family`."""
    if not net or "_target_" not in net:
        raise ValueError("model.net must be a _target_ config of a model family (conf/model/)")
    # not recursive: a family builds its own parts (a refinement head) from their configs
    family = hydra.utils.instantiate(
        dict(net), num_classes=num_classes, _recursive_=False, _convert_="all"
    )
    if not isinstance(family, Family):
        raise TypeError(f"model.net._target_ {net['_target_']!r} is not a wsl model family")
    if family.loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"{net['_target_']}.loss_reduction must be one of {LOSS_REDUCTIONS}")
    return family


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


def ground_truths_of(batch: Mapping[str, Any]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Each image's GT ``(boxes, classes, difficult)`` in pixels of the image on disk."""
    return list(
        zip(batch["original_gt_boxes"], batch["gt_classes"], batch["gt_difficult"], strict=True)
    )


@contextmanager
def inference_context(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode and without gradients, its mode restored after (detectron2's
    ``evaluation/evaluator.py`` ``inference_context``)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)
