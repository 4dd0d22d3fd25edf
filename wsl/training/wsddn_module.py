"""Training and evaluation of WSDDN (Bilen & Vedaldi, CVPR 2016).

**Loss.** Each step scores the batch's proposals (:class:`~wsl.models.wsddn.WSDDN`) and compares
the image scores with the image labels by BCE. The objective is the MatConvNet original's, per
image: BCE *summed* over classes (``mil_class_reduction: sum``; ``wsddn_loss`` is a mean over
N x C, so it is multiplied by C; ``mean``: averaged over the classes, as the refinement
methods' code, see :class:`WSDDNModule`) plus ``spatial_reg_weight`` times the spatial
regulariser, and *summed* over the batch's images, so that a batch of N images makes the step
N single-image steps would (to first order): the original's (and the course's) batch of one
image and learning rate (1e-5) carry over to any batch size. ``train/loss`` logs the per-image
value (the objective divided by N).

**Metrics.** Per epoch: the classification mAP of the image scores (``train/cls_mAP``,
``val/cls_mAP``); with ``val_detection``, the VOC detection mAP on the validation split
(``val/det_mAP``, from the validation forward pass, without test-time augmentation). The test
reports the detection mAP (``test/det_mAP``: VOC07 11-point; with ``all_point_ap`` also
``test/det_mAP_allpoint``, VOC2010's all-point AP, which WSDDN's own code reports:
``wsddnVOCevaldet.m``), the classification mAP of the image scores and, when the test split
is not ``test`` (e.g. ``trainval``), CorLoc; ``test_results`` also carries every detection, for
the devkit results files (:class:`~wsl.training.base_module.WSLModule`).

**Hooks for refinement families** (OICR, PCL subclass this class): :meth:`WSDDNModule.loss`
returns the per-image objective as named terms (a subclass adds its refinement losses to
WSDDN's), and :meth:`WSDDNModule.region_scores_for_detection` says which region scores the
detections are made of (a subclass returns its refinement streams' scores); the TTA, NMS,
thresholds, validation and test evaluation use it unchanged.

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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.models.wsddn import WSDDN, WSDDNOutput, spatial_regulariser, wsddn_loss
from wsl.structures.boxes import boxes_to_original
from wsl.structures.detections import Detections
from wsl.training.base_module import WSLModule, build_net, eval_mode, ground_truths_of
from wsl.training.detections import DetectionConfig, TTAConfig, region_detections, view_of_batch
from wsl.training.loss_scale import sum_over_global_batch

MIL_CLASS_REDUCTIONS = ("sum", "mean")  # of the per-image BCE over the classes
RegionScorer = Callable[[WSDDNOutput], Tensor]  # a forward pass's output -> region scores (R, C)


class WSDDNModule(WSLModule):
    """WSDDN and how it learns from image-level labels (see the module docstring).

    Args:
        class_names: class names in label order (from the data).
        net: a ``_target_`` config of the network (:class:`~wsl.models.wsddn.WSDDN` or a
            subclass) with its keyword arguments (backbone, weights, ...); without
            ``_target_``, WSDDN (:func:`~wsl.training.base_module.build_net`).
        optimizer: a ``_target_`` config of a ``torch.optim`` optimizer (without params); keys
            set to ``None`` are left out.
        scheduler: a ``_target_`` config of a ``torch.optim.lr_scheduler``, or ``None``.
        spatial_reg_weight: weight of the spatial regulariser (0: off; the original: 1e-4).
        inference: keyword arguments of :class:`~wsl.training.detections.DetectionConfig`.
        tta: keyword arguments of :class:`~wsl.training.detections.TTAConfig`
            (``None``: the batch as it is).
        all_point_ap: also report VOC2010 all-point AP (``det_mAP_allpoint``) beside VOC07's
            11-point ``det_mAP``.
        bias_weight_decay: apply the optimizer's weight decay to biases too (false: no decay
            on biases, as ``wsddn_init.m``).
        mil_class_reduction: how the per-image BCE combines the C classes: ``sum``
            (MatConvNet WSDDN, ``vl_nnloss`` summed over the classes) or ``mean`` (pcl.pytorch
            ``lib/modeling/pcl_heads.py:84`` ``loss.mean()``; wetectron
            ``modeling/roi_heads/weak_head/loss.py:89``; Caffe OICR's
            ``multi_class_cross_entropy_loss_layer`` divides by the channel count).
        val_detection: compute the detection mAP of the validation split every epoch.
        max_nonfinite_steps: stop after this many NaN/inf losses in a row (each is skipped).
    """

    needs_proposals = True

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
        mil_class_reduction: str = "sum",
    ) -> None:
        if mil_class_reduction not in MIL_CLASS_REDUCTIONS:
            raise ValueError(
                f"model.mil_class_reduction must be one of {list(MIL_CLASS_REDUCTIONS)}: "
                f"{mil_class_reduction!r}"
            )
        super().__init__(
            class_names, optimizer, scheduler, bias_weight_decay, all_point_ap,
            max_nonfinite_steps=max_nonfinite_steps,
        )  # fmt: skip
        self.save_hyperparameters()
        self.net = build_net(net, f"{WSDDN.__module__}.WSDDN", len(self.class_names))
        self.detection_config = DetectionConfig(**(inference or {}))
        self.tta = TTAConfig(**(tta or {}))

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

    def forward_batch(self, batch: Mapping[str, Any]) -> WSDDNOutput:
        """The network on a batch (its images, proposals and proposal scores)."""
        return self(batch["image"], batch["proposals"], batch.get("proposal_scores"))

    def _bce(self, output: WSDDNOutput, batch: Mapping[str, Any]) -> Tensor:
        """Per-image BCE summed or averaged over classes (``mil_class_reduction``), averaged
        over the batch's images (float32)."""
        with torch.autocast(self.device.type, enabled=False):
            image_scores, labels = output.image_scores.float(), batch["labels"].float()
            loss = wsddn_loss(image_scores, labels, batch["label_weights"])  # mean over N x C
            return labels.shape[1] * loss if self.hparams.mil_class_reduction == "sum" else loss

    def _spatial_regulariser(self, output: WSDDNOutput, batch: Mapping[str, Any]) -> Tensor:
        """The spatial regulariser, averaged over the batch's images (float32)."""
        with torch.autocast(self.device.type, enabled=False):
            return spatial_regulariser(
                output.features.float(),
                output.region_scores.float(),
                torch.cat(batch["proposals"]).to(self.device),
                output.region_image,
                batch["labels"],
            )

    def loss(self, output: WSDDNOutput, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The training objective per image (averaged over the batch's images, float32) as
        named terms whose sum is minimised: ``bce`` and, with ``spatial_reg_weight``, the
        weighted ``spatial_reg`` (its unweighted value is logged as ``train/spatial_reg``).
        A subclass adds its own terms to these."""
        terms = {"bce": self._bce(output, batch)}
        if self.hparams.spatial_reg_weight:
            regulariser = self._spatial_regulariser(output, batch)
            self.log("train/spatial_reg", regulariser, batch_size=len(batch["image"]))
            terms["spatial_reg"] = self.hparams.spatial_reg_weight * regulariser
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        output = self.forward_batch(batch)
        num_images = len(batch["image"])
        per_image = sum(self.loss(output, batch).values())
        assert isinstance(per_image, Tensor)  # there is always at least one term
        if not self.accept_loss(per_image):
            return None
        self.update_classification("train", batch, output.image_scores)
        self.log(
            "train/loss", per_image, on_step=True, on_epoch=True, prog_bar=True,
            batch_size=num_images,
        )  # fmt: skip
        return sum_over_global_batch(per_image, num_images, self._trainer)  # any k, any a

    def region_scores_for_detection(self, output: WSDDNOutput) -> Tensor:
        """The region scores (R, C) that detections are made of, in float32: WSDDN's
        ``region_scores`` (a refinement family returns its streams' scores)."""
        return output.region_scores.float()

    def on_validation_epoch_start(self) -> None:
        self.val_evaluator = (
            VOCDetectionEvaluator(self.class_names) if self.hparams.val_detection else None
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = self.forward_batch(batch)
        self.update_classification("val", batch, output.image_scores)
        self.log(
            "val/loss", self._bce(output, batch), prog_bar=True, batch_size=len(batch["image"]),
            sync_dist=True,
        )  # fmt: skip
        if self.val_evaluator is not None:
            counts = [len(p) for p in batch["proposals"]]
            region_scores = self.region_scores_for_detection(output).detach().split(counts)
            detections = self.postprocess(batch, region_scores)
            self.val_evaluator.process(batch["image_id"], detections, ground_truths_of(batch))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.val_evaluator is not None:
            self.log("val/det_mAP", self.val_evaluator.evaluate()["mAP"], sync_dist=False)

    def view_scores(
        self, batch: Mapping[str, Any], scorer: RegionScorer | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """Each image's region scores (K_i, C) by ``scorer`` (default:
        :meth:`region_scores_for_detection`) and WSDDN's image scores (N, C), in float32 and
        averaged over the test-time views (:attr:`tta`); regions are the batch's proposals, in
        their order."""
        scorer = scorer or self.region_scores_for_detection
        region_totals: Tensor | None = None
        image_totals: Tensor | None = None
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
                resize=self.tta.resize,
            )
            output = self(images, proposals, batch.get("proposal_scores"))
            regions, image = scorer(output), output.image_scores.float()
            region_totals = regions if region_totals is None else region_totals + regions
            image_totals = image if image_totals is None else image_totals + image
        assert region_totals is not None and image_totals is not None  # at least one view
        counts = [len(p) for p in batch["proposals"]]
        return list((region_totals / len(views)).split(counts)), image_totals / len(views)

    def postprocess(
        self, batch: Mapping[str, Any], region_scores: Sequence[Tensor], num_views: int = 1
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

    def detect(
        self, batch: Mapping[str, Any], scorer: RegionScorer | None = None
    ) -> list[Detections]:
        """Detections of every image of ``batch`` (a ``VOCProposalsDataModule`` batch):
        ``(boxes (K, 4) 0-based inclusive pixels of the image on disk, scores (K,),
        classes (K,))``, best first, on the model's device, from the region scores of
        ``scorer`` (default: :meth:`region_scores_for_detection`). Runs in eval mode (restoring
        the mode after) without gradients, with the test-time augmentation of :attr:`tta`."""
        with eval_mode(self):
            region_scores = self.view_scores(batch, scorer)[0]
            return self.postprocess(batch, region_scores, len(self.tta.views()))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        region_scores, image_scores = self.view_scores(batch)
        self.update_classification("test", batch, image_scores)
        self.record_test(batch, self.postprocess(batch, region_scores, len(self.tta.views())))
