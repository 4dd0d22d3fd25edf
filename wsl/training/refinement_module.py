"""Training and evaluation of OICR (Tang et al., CVPR 2017) and PCL (Tang et al., TPAMI 2018).

Both are WSDDN (:class:`~wsl.training.wsddn_module.WSDDNModule`) with K refinement streams
(:class:`~wsl.models.refinement.RefinementHeads`) on WSDDN's fc7 region features. Stream 0 learns
from WSDDN's region scores, stream k from stream k - 1's (``method``: ``oicr``: single top-scoring
seeds, ``pcl``: proposal clusters; :func:`~wsl.pseudo_labels.losses.stream_losses`).

**Loss.** WSDDN's per-image objective plus the SUM of the K streams' per-image losses, as the
authors' code (ppengtang/oicr ``models/VGG16/train.prototxt``: ``loss_weight: 1`` on the MIL loss
and each ``WeightedSoftmaxWithLoss``; pcl.pytorch ``lib/modeling/model_builder.py`` adds the
losses); the issue says the mean of the K streams, which would scale the refinement gradient by
1/K against the authors'. The stream losses are per image (averaged over the batch's images, as
WSDDN's ``train/loss``), so the whole objective is scaled to a sum over the global batch by
:func:`~wsl.training.loss_scale.sum_over_global_batch`, as WSDDN's. ``train/refine_loss_k`` logs
stream k's per-image loss.

**Test.** Detections rank the mean of the K streams' class scores, background dropped
(:func:`~wsl.models.refinement.refined_region_scores`), averaged over the test-time views and
then thresholded and NMS-ed as WSDDN's region scores. The classification scores of the test
(``cls_mAP``) are WSDDN's image scores, as every epoch's ``train/cls_mAP`` and ``val/cls_mAP``:
the streams' scores are per-region softmaxes, whose sum over an image's regions is no
probability (it was, on the demo, a test cls_mAP of 0.48 against 0.99 from WSDDN's).

**Pictures.** :meth:`RefinementModule.detections_by_source` gives, for the same images, WSDDN's
detections and the last stream's, which the box pictures draw side by side.

**Optimizer.** ``refinement_lr_mult`` and ``refinement_bias_lr_mult`` multiply the learning rate
of the streams' weights and biases (OICR's Caffe prototxt: 10 and 20 on ``ic_score*``;
pcl.pytorch: 1 and 2, its optimizer's 2x on every bias). ``bias_lr_mult`` multiplies that of
every other bias (WSDDN's and the backbone's): both codes use 2 (Caffe ``lr_mult: 2,
decay_mult: 0`` on every bias of ppengtang/oicr ``models/VGG16/train.prototxt``, e.g. lines
146-147; pcl.pytorch 0.4.0 ``lib/core/config.py`` lines 319 and 322, ``BIAS_DOUBLE_LR True``,
``BIAS_WEIGHT_DECAY False``, applied in ``tools/train_net_step.py`` lines 282-289). The stream
factors are the whole factor, not multiplied by ``bias_lr_mult`` (Caffe writes 20 for
``ic_score`` biases, 2 x 10). ``scheduler_interval: step`` steps the scheduler every optimizer
step, so ``MultiStepLR`` milestones and ``LinearLR`` warm-up iterations count iterations as the
authors' solvers do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from wsl.models.refinement import RefinementHeads, refined_region_scores
from wsl.models.wsddn import WSDDNOutput
from wsl.pseudo_labels.losses import METHODS, stream_losses
from wsl.pseudo_labels.oicr import BG_THRESHOLD
from wsl.structures.detections import Detections
from wsl.training.wsddn_module import WSDDNModule

REFINEMENT_PREFIX = "refinement."  # the streams' parameter names


class RefinementModule(WSDDNModule):
    """OICR or PCL: WSDDN and its refinement streams (see the module docstring).

    Args:
        method: ``oicr`` or ``pcl``: how each stream's pseudo labels and loss are made.
        num_streams: the number K of refinement streams (the papers: 3).
        refinement_lr_mult: learning-rate factor of the streams' weights (OICR's Caffe: 10).
        refinement_bias_lr_mult: learning-rate factor of the streams' biases (OICR's Caffe: 20).
        bias_lr_mult: learning-rate factor of the other biases (both authors' codes: 2; 1 keeps
            WSDDN's single learning rate).
        scheduler_interval: ``epoch`` or ``step``: when the scheduler steps.
        bg_threshold: proposals whose best IoU with every seed or cluster centre is below
            this are ignored (weight 0; pcl.pytorch ``cfg.TRAIN.BG_THRESH``: 0.1); 0 keeps
            them all as weighted background, as the Caffe OICR layer.
        **wsddn: the arguments of :class:`~wsl.training.wsddn_module.WSDDNModule`.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        method: str = "oicr",
        num_streams: int = 3,
        refinement_lr_mult: float = 1.0,
        refinement_bias_lr_mult: float = 1.0,
        scheduler_interval: str = "epoch",
        bg_threshold: float = BG_THRESHOLD,
        bias_lr_mult: float = 1.0,
        **wsddn: Any,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown refinement method {method!r}; choose one of {list(METHODS)}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be epoch or step: {scheduler_interval!r}")
        if bias_lr_mult <= 0:
            raise ValueError(f"model.bias_lr_mult must be positive, got {bias_lr_mult}")
        super().__init__(class_names, **wsddn)
        self.save_hyperparameters()
        self.bias_lr_mult = bias_lr_mult
        self.refinement = RefinementHeads(
            self.net.fc8c.in_features, len(self.class_names), num_streams
        )

    def stream_scores(self, output: WSDDNOutput) -> list[Tensor]:
        """The K streams' (R, C + 1) softmax scores of ``output``'s regions, background first."""
        return self.refinement(output.features)

    def region_scores_for_detection(self, output: WSDDNOutput) -> Tensor:
        """The mean of the K streams' class scores (R, C), background dropped (float32)."""
        return refined_region_scores(self.stream_scores(output)).float()

    def detections_by_source(self, batch: Mapping[str, Any]) -> dict[str, list[Detections]]:
        """For the same images: WSDDN's detections (its ``region_scores``) and the last
        refinement stream's (background dropped), each with the test's TTA, NMS and threshold."""
        last = len(self.refinement.streams)
        return {
            "WSDDN": self.detect(batch, scorer=lambda output: output.region_scores.float()),
            f"refinement stream {last}": self.detect(
                batch, scorer=lambda output: self.stream_scores(output)[-1][:, 1:].float()
            ),
        }

    def refinement_losses(self, output: WSDDNOutput, batch: Mapping[str, Any]) -> Tensor:
        """(K,) each stream's per-image loss, averaged over the batch's images (float32)."""
        with torch.autocast(self.device.type, enabled=False):
            return stream_losses(
                self.hparams.method,
                torch.cat(batch["proposals"]).to(self.device),
                output.region_image,
                output.region_scores.float(),
                self.stream_scores(output),
                batch["labels"].to(self.device),
                self.hparams.bg_threshold,
            )

    def loss(self, output: WSDDNOutput, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """WSDDN's terms plus ``refine_<k>``, each stream's per-image loss (summed with the
        rest, as the authors' code; logged as ``train/refine_loss_<k>``)."""
        terms = super().loss(output, batch)
        for k, loss in enumerate(self.refinement_losses(output, batch)):
            self.log(f"train/refine_loss_{k}", loss.detach(), on_step=True, on_epoch=True,
                     batch_size=len(batch["image"]))  # fmt: skip
            terms[f"refine_{k}"] = loss
        return terms

    def configure_optimizers(self) -> Any:
        configured = super().configure_optimizers()
        if isinstance(configured, dict) and self.hparams.scheduler_interval == "step":
            scheduler = configured["lr_scheduler"]
            configured["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        return configured

    def parameter_groups(self) -> list[dict[str, Any]]:
        """WSDDN's groups without the streams (its biases at ``bias_lr_mult``), then the
        streams' weights and biases at ``refinement_lr_mult`` and ``refinement_bias_lr_mult``
        times the base learning rate (biases without weight decay unless
        ``bias_weight_decay``)."""
        refinement = [
            (n, p)
            for n, p in self.named_parameters()
            if n.startswith(REFINEMENT_PREFIX) and p.requires_grad
        ]
        ids = {id(p) for _, p in refinement}
        groups = [
            {**g, "params": [p for p in g["params"] if id(p) not in ids]}
            for g in super().parameter_groups()
        ]
        lr = self.optimizer_config["lr"]
        bias_group: dict[str, Any] = {
            "params": [p for n, p in refinement if n.endswith(".bias")],
            "lr": lr * self.hparams.refinement_bias_lr_mult,
        }
        if not self.bias_weight_decay:
            bias_group["weight_decay"] = 0.0
        weights = [p for n, p in refinement if not n.endswith(".bias")]
        return [
            *groups,
            {"params": weights, "lr": lr * self.hparams.refinement_lr_mult},
            bias_group,
        ]
