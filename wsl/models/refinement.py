"""Instance classifier refinement heads of OICR (Tang et al., CVPR 2017) and PCL (TPAMI 2018).

K streams, each a ``Linear(in_features, C + 1)`` followed by a softmax over the C + 1 classes,
all reading the same region features as WSDDN's two heads (fc7 after ReLU and dropout:
``WSDDNOutput.features``). Background is the FIRST column (index 0), classes are 1..C, as the
authors' code has it (ppengtang/pcl.pytorch ``lib/modeling/pcl_heads.py``: ``refine_outputs``;
ppengtang/oicr ``models/VGG16/train.prototxt``: ``ic_score``, ``ic_score1``, ``ic_score2``), so
the pseudo labels of ``wsl.pseudo_labels.oicr`` are 0 for background and ``c + 1`` for class
``c`` of the image labels.

Initialisation as ``refine_outputs._init_weights``: weights normal with std 0.01, biases 0. The
Caffe prototxt gives these layers 10x the base learning rate (weights; 20x the biases);
pcl.pytorch does not. That is the optimizer's business, not this module's.

At test time the detection scores are the mean of the K streams' probabilities with the
background column dropped (:func:`refined_region_scores`; pcl.pytorch ``lib/core/test.py``
``im_detect_bbox``: ``scores = sum(refine_score) / REFINE_TIMES``; the Caffe ``test.py`` sums
the three streams, which ranks the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

INIT_STD = 0.01  # refine_outputs._init_weights


class RefinementHeads(nn.Module):
    """``num_streams`` (C + 1)-way region classifiers over ``in_features``-dim region features.

    ``forward(features)`` with ``features`` (R, in_features) gives a list of ``num_streams``
    tensors (R, C + 1), each row a softmax (sums to 1), column 0 the background. Run in float32
    under autocast: the refinement losses take logs of these probabilities.
    """

    def __init__(self, in_features: int, num_classes: int, num_streams: int = 3) -> None:
        super().__init__()
        if num_streams < 1:
            raise ValueError(f"num_streams must be at least 1, got {num_streams}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.streams = nn.ModuleList(
            nn.Linear(in_features, num_classes + 1) for _ in range(num_streams)
        )
        for stream in self.streams:
            nn.init.normal_(stream.weight, std=INIT_STD)
            nn.init.zeros_(stream.bias)

    def forward(self, features: Tensor) -> list[Tensor]:
        """Softmax scores (R, C + 1) of each stream, background first."""
        with _float32(features.device.type):
            x = features.float()
            return [stream(x).softmax(dim=1) for stream in self.streams]


def refined_region_scores(stream_scores: Sequence[Tensor]) -> Tensor:
    """Test-time region scores (R, C): the mean of the streams' (R, C + 1) scores, background
    (column 0) dropped, as pcl.pytorch's ``im_detect_bbox``."""
    if len(stream_scores) == 0:
        raise ValueError("refined_region_scores needs the scores of at least one stream")
    return torch.stack(list(stream_scores)).mean(dim=0)[:, 1:]


def _float32(device_type: str) -> AbstractContextManager[Any]:
    """A block outside autocast, where the device has autocast (the meta device has none)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()
