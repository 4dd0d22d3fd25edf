"""Training throughput of WSDDN: the project's batched step against the plain loop of the
public ports, on random images and random valid proposals (fixed seed).

- **plain** (how the public WSDDN ports train): one image per step in float32; its proposals
  are a ``(K, 5)`` rois tensor ``[0, x1, y1, x2, y2]`` passed to ``roi_pool``; softmax over the
  image's regions; one forward, backward and SGD step per image (:func:`plain_forward`).
- **wsl**: a batch of images, zero-padded as ``collate_padded`` pads them, each with its own
  number of proposals, through :class:`~wsl.models.wsddn.WSDDN` (one ROI-pool call for the
  batch, segment-wise softmax), optionally under ``torch.autocast(dtype=torch.bfloat16)``, with
  channels-last tensors and ``cudnn.benchmark``. The loss is the family's own
  (:meth:`~wsl.models.wsddn.WSDDN.step`: the named losses, computed outside autocast in
  float32), summed as the training module sums them; a setup's ``refinement`` adds that head
  (``REFINEMENT_HEADS``: OICR's, PCL's or MIST's streams) and its losses.

A setup with a ``detector`` (``fast_rcnn`` or ``faster_rcnn``) times the second stage's
supervised detector instead (:class:`~wsl.models.supervised.SupervisedDetector` in that mode, on
the same backbone): its targets are each image's first proposals, one per positive class, as
ground-truth boxes of those classes; its step is the family's own too (torchvision's sampling,
losses and, for ``faster_rcnn``, the RPN).

All train the same network (AlexNet, weights ``none``, same seed) with the WSDDN config's SGD.
A setup may name another ``backbone``: ``vgg16`` (stride 16, conv1 frozen as
``conf/model/wsddn.yaml``) or ``vgg16_dilated`` (stride 8, ``freeze_blocks=2``: conv1_x and
conv2_x frozen, as ``experiment=oicr_vgg16`` and ``pcl_vgg16`` after the authors' code).
Images are ``scale x 4/3 scale``, 30% of them portrait (VOC's mix), so batches pay for padding
as they do in training. Each image has between 80% and 100% of ``proposals`` boxes of at least
20 pixels a side. Warm-up: one pass over all the images (every input shape is seen once, so
``cudnn.benchmark`` and the caching allocator settle); then ``timed_passes`` passes are timed,
with ``torch.cuda.synchronize()`` around each on a GPU. Inputs start on the host (pinned on a
GPU) and are copied in every step, as a data loader's batches are.

A measurement runs in a fresh process (:func:`measure_training_in_subprocess`), so that its peak
memory (:mod:`wsl.benchmarks.memory`) and timings do not depend on what ran before it.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_pool

from wsl.benchmarks.memory import PeakMemory
from wsl.data.datamodule import collate_padded
from wsl.models.family import Family
from wsl.models.supervised import MODES, SupervisedDetector
from wsl.models.wsddn import EPS, WSDDN, wsddn_loss

PORTRAIT_FRACTION = 0.3
MIN_PROPOSAL_SIDE = 20  # pixels, as data.proposal_filter.min_size
# conf/model/wsddn.yaml's optimizer
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 1e-5, 0.9, 5e-4
# the heads of a setup's ``refinement`` (conf/model/oicr.yaml, pcl.yaml, mist.yaml)
REFINEMENT_HEADS: dict[str, dict[str, Any]] = {
    "oicr": {"_target_": "wsl.models.refinement.RefinementHeads", "method": "oicr"},
    "pcl": {"_target_": "wsl.models.refinement.RefinementHeads", "method": "pcl"},
    "mist": {"_target_": "wsl.models.mist.MISTHeads"},
}


@dataclass(frozen=True)
class TrainSetup:
    """One way of training: the plain loop, or the project's step with its options."""

    name: str
    plain: bool  # True: the plain loop (batch_size must be 1); False: WSDDN's batched forward
    batch_size: int = 1
    bf16: bool = False  # autocast to bfloat16
    channels_last: bool = False
    cudnn_benchmark: bool = False
    refinement: str | None = None  # a REFINEMENT_HEADS key: WSDDN plus that head and its losses
    backbone: str = "alexnet"  # wsl.models.backbones.BACKBONES
    freeze_blocks: int = 0  # WSDDN(freeze_blocks=...): leading conv blocks kept fixed
    detector: str | None = None  # a supervised.MODES mode: that detector instead of WSDDN


@dataclass(frozen=True)
class TrainWork:
    """What every setup is timed on."""

    device: str  # "cpu" or "cuda"
    scale: int  # shorter image side
    proposals: int  # most proposals per image
    images: int  # per pass (a multiple of every batch size)
    timed_passes: int
    num_classes: int = 20
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    """Throughput of one setup and the peak memory it needed (None: unknown)."""

    setup: TrainSetup
    images_per_s: float
    pass_images_per_s: list[float]  # each timed pass, to judge the noise
    peak_memory_bytes: int | None


@dataclass(frozen=True)
class SyntheticImage:
    """One random training image and what a step needs of it."""

    image: Tensor  # (3, H, W)
    proposals: Tensor  # (K, 4) x1, y1, x2, y2, inclusive pixels
    labels: Tensor  # (C,) 0/1


def synthetic_images(work: TrainWork) -> list[SyntheticImage]:
    """``work.images`` random images with random valid proposals and 1-3 positive classes."""
    generator = torch.Generator().manual_seed(work.seed)

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator)

    long_side = round(work.scale * 4 / 3)
    images = []
    for _ in range(work.images):
        portrait = uniform(1).item() < PORTRAIT_FRACTION
        height, width = (long_side, work.scale) if portrait else (work.scale, long_side)
        low_count = math.ceil(0.8 * work.proposals)
        count = int(torch.randint(low_count, work.proposals + 1, (1,), generator=generator))
        size = torch.tensor([width, height], dtype=torch.float32)
        low = uniform(count, 2) * (size - MIN_PROPOSAL_SIDE)
        high = low + MIN_PROPOSAL_SIDE - 1 + uniform(count, 2) * (size - MIN_PROPOSAL_SIDE - low)
        labels = torch.zeros(work.num_classes)
        positives = int(torch.randint(1, 4, (1,), generator=generator))
        labels[torch.randperm(work.num_classes, generator=generator)[:positives]] = 1
        image = torch.randn(3, height, width, generator=generator)
        images.append(SyntheticImage(image, torch.cat([low, high], dim=1), labels))
    return images


def plain_forward(model: WSDDN, image: Tensor, rois: Tensor) -> Tensor:
    """Image scores (1, C) of one image (1, 3, H, W) from rois (K, 5), as the public ports
    compute them with ``model``'s layers (same result as ``model(image, [rois[:, 1:]])``)."""
    x = model.features(image)
    x = roi_pool(x, rois, model.roi_size, spatial_scale=1 / model.stride)
    x = model.dropout(F.relu(model.fc6(x.flatten(1))))
    x = model.dropout(F.relu(model.fc7(x)))
    scores = model.fc8c(x).softmax(dim=1) * model.fc8d(x).softmax(dim=0)
    return scores.sum(dim=0, keepdim=True).clamp(EPS, 1 - EPS)


def plain_inputs(images: list[SyntheticImage]) -> list[dict[str, Tensor]]:
    """One step's input per image: the image, its (K, 5) rois and labels, batch dims of 1."""
    return [
        {
            "image": i.image[None],
            "rois": torch.cat([i.proposals.new_zeros(len(i.proposals), 1), i.proposals], dim=1),
            "labels": i.labels[None],
        }
        for i in images
    ]


def _batched_inputs(images: list[SyntheticImage], batch_size: int) -> list[dict[str, Any] | None]:
    """Batches as the project's proposals datamodule collates them (zero-padded images)."""
    samples = [
        {
            "image": i.image,
            "proposals": i.proposals,
            "labels": i.labels,
            "label_weights": torch.ones_like(i.labels),
            # the supervised detector's targets: a proposal per positive class
            "gt_classes": i.labels.nonzero().squeeze(1),
            "gt_boxes": i.proposals[: int(i.labels.sum())],
            "input_size": tuple(i.image.shape[1:]),
        }
        for i in images
    ]
    return [collate_padded(samples[s : s + batch_size]) for s in range(0, len(samples), batch_size)]


def _pinned(value: Any) -> Any:
    """Tensors (also in lists and dicts) in pinned host memory, as a GPU data loader gives them."""
    if isinstance(value, Tensor):
        return value.pin_memory()
    if isinstance(value, list):
        return [_pinned(v) for v in value]
    if isinstance(value, dict):
        return {k: _pinned(v) for k, v in value.items()}
    return value


def _step_function(
    setup: TrainSetup, model: Family, optimizer: torch.optim.Optimizer, device: torch.device
) -> Callable[[dict[str, Any]], None]:
    """One training step of ``setup`` on one input of its kind."""

    def update(loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def plain_step(x: dict[str, Any]) -> None:
        image = x["image"].to(device, non_blocking=True)
        rois = x["rois"].to(device, non_blocking=True)
        scores = plain_forward(model, image, rois)
        update(wsddn_loss(scores, x["labels"].to(device, non_blocking=True)))

    def wsl_step(x: dict[str, Any]) -> None:
        images = x["image"].to(device, non_blocking=True)
        if setup.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        batch = {
            **x,
            "image": images,
            **{
                key: [t.to(device, non_blocking=True) for t in x[key]]
                for key in ("proposals", "gt_boxes", "gt_classes")
            },
            "labels": x["labels"].to(device, non_blocking=True),
            "label_weights": x["label_weights"].to(device, non_blocking=True),
        }
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setup.bf16):
            losses = model.step(batch).losses
        update(sum(losses.values()))  # type: ignore[arg-type]

    return plain_step if setup.plain else wsl_step


def build_model(setup: TrainSetup, num_classes: int) -> Family:
    """The network ``setup`` trains: WSDDN (with its ``refinement`` head) or its ``detector``."""
    if setup.detector is not None:
        if setup.detector not in MODES:
            raise ValueError(f"detector must be one of {list(MODES)}, got {setup.detector!r}")
        return SupervisedDetector(
            num_classes, mode=setup.detector, backbone=setup.backbone, weights="none",
            freeze_blocks=setup.freeze_blocks,
        )  # fmt: skip
    refinement = None if setup.refinement is None else REFINEMENT_HEADS[setup.refinement]
    return WSDDN(
        num_classes, backbone=setup.backbone, weights="none",
        freeze_blocks=setup.freeze_blocks, refinement=refinement,
        mil_class_reduction="sum" if refinement is None else "mean",
    )  # fmt: skip


def measure_training(setup: TrainSetup, work: TrainWork) -> TrainResult:
    """Images per second of ``setup``'s training steps on ``work``, and its peak memory."""
    if setup.plain and setup.batch_size != 1:
        raise ValueError(f"the plain loop trains on one image at a time, not {setup.batch_size}")
    if work.images % setup.batch_size:
        raise ValueError(
            f"{work.images} images per pass do not split in batches of {setup.batch_size}"
        )
    device = torch.device(work.device)
    torch.backends.cudnn.benchmark = setup.cudnn_benchmark
    images = synthetic_images(work)
    inputs = plain_inputs(images) if setup.plain else _batched_inputs(images, setup.batch_size)
    if device.type == "cuda":
        inputs = _pinned(inputs)
    memory = PeakMemory(device)
    torch.manual_seed(work.seed)
    model = build_model(setup, work.num_classes).to(device).train()
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        parameters, lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    step = _step_function(setup, model, optimizer, device)

    def one_pass() -> float:
        _synchronize(device)
        start = time.perf_counter()
        for x in inputs:
            step(x)
        _synchronize(device)
        return time.perf_counter() - start

    one_pass()  # warm-up
    memory.reset_peak()
    seconds = [one_pass() for _ in range(work.timed_passes)]
    return TrainResult(
        setup=setup,
        images_per_s=work.images * len(seconds) / sum(seconds),
        pass_images_per_s=[work.images / s for s in seconds],
        peak_memory_bytes=memory.peak_bytes(),
    )


def measure_training_in_subprocess(setup: TrainSetup, work: TrainWork) -> TrainResult:
    """:func:`measure_training` in a fresh (spawned) process."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_training, setup, work).result()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
