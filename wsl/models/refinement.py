"""Instance classifier refinement heads of OICR (Tang et al., CVPR 2017) and PCL (TPAMI 2018).

K streams, each a ``Linear(in_features, C + 1)`` followed by a softmax over the C + 1 classes,
all reading the same region features as WSDDN's two heads (fc7 after ReLU and dropout:
``WSDDNOutput.features``). Background is the FIRST column (index 0), classes are 1..C, as the
authors' code has it (ppengtang/pcl.pytorch ``lib/modeling/pcl_heads.py``: ``refine_outputs``;
ppengtang/oicr ``models/VGG16/train.prototxt``: ``ic_score``, ``ic_score1``, ``ic_score2``), so
the pseudo labels of ``wsl.pseudo_labels.oicr`` are 0 for background and ``c + 1`` for class
``c`` of the image labels.

The head is chosen in YAML as ``model.net.refinement`` of :class:`~wsl.models.wsddn.WSDDN`
(``conf/model/oicr.yaml``, ``pcl.yaml``). ``method`` picks the pseudo labels each stream learns
from (``oicr``: single top-scoring seeds, :mod:`wsl.pseudo_labels.oicr`; ``pcl``: proposal
clusters, :mod:`wsl.pseudo_labels.pcl`): stream 0 from WSDDN's region scores, stream k from
stream k - 1's (:func:`~wsl.pseudo_labels.losses.stream_losses`). The losses are named
``refine_loss_<k>`` and summed with WSDDN's, as the authors' codes (ppengtang/oicr
``models/VGG16/train.prototxt``: ``loss_weight: 1`` on the MIL loss and each
``WeightedSoftmaxWithLoss``; pcl.pytorch ``lib/modeling/model_builder.py`` adds them).

Initialisation as ``refine_outputs._init_weights``: weights normal with std 0.01, biases 0.
``lr_mult`` and ``bias_lr_mult`` are the whole learning-rate factors of the streams' weights and
biases (the training module gives the head its own parameter groups): the Caffe prototxt's 10
and 20 on ``ic_score*``; pcl.pytorch's 1 and 2 (its 2x on every bias).

At test time the detection scores are the mean of the K streams' probabilities with the
background column dropped (:func:`refined_region_scores`; pcl.pytorch ``lib/core/test.py``
``im_detect_bbox``: ``scores = sum(refine_score) / REFINE_TIMES``; the Caffe ``test.py`` sums
the three streams, which ranks the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wsl.models.roi import float32_block
from wsl.pseudo_labels.losses import METHODS, stream_losses
from wsl.pseudo_labels.oicr import BG_THRESHOLD

INIT_STD = 0.01  # refine_outputs._init_weights


class RefinementHeads(nn.Module):
    """``num_streams`` (C + 1)-way region classifiers over ``in_features``-dim region features.

    ``forward(features)`` with ``features`` (R, in_features) gives a list of ``num_streams``
    tensors (R, C + 1), each row a softmax (sums to 1), column 0 the background. Run in float32
    under autocast: the refinement losses take logs of these probabilities.

    Args:
        in_features: the region features' size (WSDDN's fc7).
        num_classes: C.
        num_streams: K (the papers: 3; ppengtang/oicr ``ic_score``, ``ic_score1``, ``ic_score2``).
        method: ``oicr`` or ``pcl``: how each stream's pseudo labels and loss are made.
        bg_threshold: proposals whose best IoU with every seed or cluster centre is below this
            are ignored (weight 0; pcl.pytorch ``cfg.TRAIN.BG_THRESH``: 0.1); 0 keeps them all
            as weighted background, as the Caffe OICR layer.
        lr_mult: learning-rate factor of the streams' weights (OICR's Caffe: 10).
        bias_lr_mult: learning-rate factor of the streams' biases (OICR's Caffe: 20).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_streams: int = 3,
        method: str = "oicr",
        bg_threshold: float = BG_THRESHOLD,
        lr_mult: float = 1.0,
        bias_lr_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if num_streams < 1:
            raise ValueError(f"num_streams must be at least 1, got {num_streams}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if method not in METHODS:
            raise ValueError(f"unknown refinement method {method!r}; choose one of {list(METHODS)}")
        self.num_classes, self.num_streams = num_classes, num_streams
        self.method, self.bg_threshold = method, bg_threshold
        self.lr_mult, self.bias_lr_mult = lr_mult, bias_lr_mult
        self.streams = nn.ModuleList(
            nn.Linear(in_features, num_classes + 1) for _ in range(num_streams)
        )
        for stream in self.streams:
            nn.init.normal_(stream.weight, std=INIT_STD)
            nn.init.zeros_(stream.bias)

    def forward(self, features: Tensor) -> list[Tensor]:
        """Softmax scores (R, C + 1) of each stream, background first."""
        with float32_block(features.device.type):
            x = features.float()
            return [stream(x).softmax(dim=1) for stream in self.streams]

    def losses(
        self, probs: Sequence[Tensor], boxes: Tensor, region_image: Tensor,
        region_scores: Tensor, labels: Tensor,
    ) -> dict[str, Tensor]:  # fmt: skip
        """``refine_loss_<k>``: each stream's per-image loss, averaged over the batch's images
        (float32). ``boxes`` (R, 4), ``region_image`` (R,), ``region_scores`` (R, C): the
        proposals and WSDDN's output; ``labels`` (N, C)."""
        with float32_block(boxes.device.type):
            losses = stream_losses(
                self.method, boxes, region_image, region_scores, probs, labels, self.bg_threshold
            )
        return {f"refine_loss_{k}": loss for k, loss in enumerate(losses)}

    def scores(self, probs: Sequence[Tensor], stream: int | None = None) -> Tensor:
        """Test-time region scores (R, C), background dropped: the mean of the streams'
        (:func:`refined_region_scores`), or stream ``stream``'s alone."""
        return refined_region_scores(probs if stream is None else [probs[stream]])

    def boxes(self, probs: Sequence[Tensor], boxes: Tensor, stream: int | None = None) -> None:
        """The streams classify the proposals; they regress no box."""
        return None


def refined_region_scores(stream_scores: Sequence[Tensor]) -> Tensor:
    """Test-time region scores (R, C): the mean of the streams' (R, C + 1) scores, background
    (column 0) dropped, as pcl.pytorch's ``im_detect_bbox``."""
    if len(stream_scores) == 0:
        raise ValueError("refined_region_scores needs the scores of at least one stream")
    return torch.stack(list(stream_scores)).mean(dim=0)[:, 1:]
