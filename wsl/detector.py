"""A trained checkpoint as a detector: ``wsl.load(ckpt_path).detect(images)``.

The per-image pipeline is shared with ``python -m wsl.predict``: the checkpoint's run config
rebuilds the model and its eval transform; the Localizer reads boxes off the heatmaps of its
predicted classes; WSDDN scores region proposals (given, or selective search computed on the
image). Boxes come back in 0-based inclusive pixels of the image as given (files and PIL images
turned upright by their EXIF orientation).

    import wsl
    detector = wsl.load("outputs/runs/train/wsddn_demo/<time>/checkpoints/last.ckpt")
    for found in detector.detect(["a.jpg", pil_image, uint8_tensor]):
        print(found.labels(detector.class_names), found.scores, found.boxes)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from PIL import Image, ImageOps
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms.v2.functional import pil_to_tensor

from wsl.checkpoint import RunCheckpoint
from wsl.data.bad_input import DataError
from wsl.data.images import read_upright_tensor
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.selective_search import selective_search
from wsl.data.transforms import build_transform
from wsl.models.backbones import spatial_size
from wsl.structures.boxes import boxes_to_original, continuous_to_inclusive, inclusive_to_continuous
from wsl.structures.detections import Detections
from wsl.structures.evidence import ClassEvidence
from wsl.structures.proposals import Proposals
from wsl.training.module import WSLModule

# (image key, uint8 3xHxW working image, (height, width) on disk) -> the image's detections on
# the working image and, for a family that shows them, its class evidence; the key names the
# image (its path for predict)
Predictor = Callable[[Hashable, Tensor, tuple[int, int]], tuple[Detections, ClassEvidence | None]]


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(
    ckpt_path: str | Path, device: torch.device
) -> tuple[pl.LightningModule, DictConfig]:
    """The LightningModule of ``ckpt_path`` (eval mode, on ``device``) and its run's config,
    rebuilt from the checked file (:class:`~wsl.checkpoint.RunCheckpoint`)."""
    checkpoint = RunCheckpoint.read(ckpt_path)
    return checkpoint.build_module(map_location=device).eval(), checkpoint.config


def model_predictor(
    module: WSLModule,
    transform: Callable,
    class_threshold: float,
    proposals: Mapping[Hashable, Proposals] | None = None,
    proposal_filter: ProposalFilter | None = None,
) -> Predictor:
    """``module.detect`` on one image at a time, for any family. A family that needs proposals
    (``module.needs_proposals``) scores each image's filtered ``proposals`` (by image key;
    boxes in pixels of the image on disk). A family that shows class evidence (the Localizer)
    keeps the boxes of the classes scoring at least ``class_threshold`` (the best class when
    none does) and returns its class scores and heatmaps."""

    def predict_image(
        key: Hashable, image: Tensor, on_disk: tuple[int, int]
    ) -> tuple[Detections, ClassEvidence | None]:
        size = (image.shape[1], image.shape[2])
        sample = {"image": tv_tensors.Image(image)}
        if module.needs_proposals:
            if proposals is None or proposal_filter is None:
                raise ValueError(f"a {type(module).__name__} needs proposals and their filter")
            source = f"selective-search proposals of {key}"
            kept = proposal_filter.apply(proposals[key], on_disk[1], on_disk[0], source)
            # The proposals on the working image (the same rescaling, from disk to working size).
            working = boxes_to_original(torch.from_numpy(kept.boxes).float(), on_disk, size)
            sample["proposals"] = tv_tensors.BoundingBoxes(
                inclusive_to_continuous(working), format="XYXY", canvas_size=size
            )
        sample = transform(sample)
        inputs = sample["image"].as_subclass(Tensor)
        batch: dict[str, Any] = {
            "image": inputs[None],
            "original_size": [size],
            "input_size": [(inputs.shape[1], inputs.shape[2])],
        }
        if module.needs_proposals:
            batch["proposals"] = [continuous_to_inclusive(sample["proposals"].as_subclass(Tensor))]
            batch["proposal_scores"] = [None]
        [found], [evidence] = module.detect_with_evidence(batch)
        found = found.cpu()
        if evidence is None:
            return found, None
        predicted = (evidence.class_scores >= class_threshold).nonzero().squeeze(1).tolist()
        predicted = predicted or [int(evidence.class_scores.argmax())]
        keep = torch.isin(found.classes, torch.tensor(predicted, dtype=found.classes.dtype))
        return found.subset(keep), evidence._replace(predicted=tuple(predicted))

    return predict_image


ImageInput = str | Path | Image.Image | Tensor
ACCEPTED = (
    "an image file path, a PIL image, a uint8 3xHxW RGB tensor (0..255) or a float 3xHxW RGB "
    "tensor in [0, 1]"
)


def as_uint8_image(image: ImageInput, name: str = "image") -> Tensor:
    """A uint8 3xHxW RGB tensor of one of :data:`ACCEPTED`, H and W at least 1: a file or a PIL
    image turned upright by its EXIF orientation (:func:`PIL.ImageOps.exif_transpose`). Anything
    else is refused in one line naming ``name``: a :class:`ValueError` (:class:`DataError` for a
    file), a :class:`TypeError` for another type."""
    if isinstance(image, str | Path):
        return read_upright_tensor(Path(image))[0]
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise ValueError(
                f"{name}: a PIL image of {image.width}x{image.height} pixels; an image needs at "
                "least 1x1 pixels"
            )
        return pil_to_tensor(ImageOps.exif_transpose(image).convert("RGB"))
    if not isinstance(image, Tensor):
        hint = " (an HxWx3 array: torch.from_numpy(array).permute(2, 0, 1))"
        raise TypeError(
            f"{name}: cannot read an image from a {type(image).__name__}; give {ACCEPTED}"
            + (hint if isinstance(image, np.ndarray) else "")
        )
    shape = tuple(image.shape)
    if image.ndim != 3 or shape[0] != 3:
        hint = ""
        if image.ndim == 4:
            hint = "; give a batch as a list of 3xHxW tensors (list(batch))"
        elif image.ndim == 3 and shape[-1] == 3:
            hint = "; move channels first (image.permute(2, 0, 1))"
        raise ValueError(f"{name}: an image tensor must be 3xHxW (RGB), got {shape}{hint}")
    if image.numel() == 0:
        raise ValueError(
            f"{name}: a {'x'.join(map(str, shape))} tensor has no pixels; an image needs at "
            "least 1x1 pixels"
        )
    if image.dtype == torch.uint8:
        return image.cpu()
    if not image.is_floating_point():
        raise ValueError(
            f"{name}: an image tensor must be uint8 (0..255) or floating point in [0, 1], got "
            f"{image.dtype}; convert 0..255 values with .to(torch.uint8)"
        )
    image = image.detach().cpu()
    bad = int((~torch.isfinite(image)).sum())
    if bad:
        raise ValueError(
            f"{name}: a float tensor must hold finite values in [0, 1], found {bad} NaN or "
            "infinite values"
        )
    low, high = image.min(), image.max()
    if low < 0:
        raise ValueError(
            f"{name}: a float tensor must hold values in [0, 1], found min {_shown(low)}; give "
            "the image before normalization (the model normalizes it)"
        )
    if high > 1:
        raise ValueError(
            f"{name}: a float tensor must hold values in [0, 1], found max {_shown(high)}; "
            "divide uint8-range values by 255 or pass a uint8 tensor"
        )
    return (image * 255).round().to(torch.uint8)


def _shown(value: Tensor) -> str:
    """A float scalar as its own precision writes it (float32 -2.1 as ``-2.1``, not
    ``-2.0999999046325684``)."""
    return str(value.numpy() if value.dtype == torch.float64 else value.float().numpy())


def check_network_input(
    transform: Callable, module: nn.Module, size: tuple[int, int], name: str | Path
) -> None:
    """Refuse, with a :class:`DataError` naming ``name``, an image of ``size`` (height, width)
    that the eval ``transform`` resizes to less than the network takes: no pixel left, or too
    few for the convolutions and max-pools of ``module.net`` (in registration order, as the
    Localizer's ``score_map_size`` counts them) to leave a map. Only a very elongated image is:
    the ``shortest_side`` resize caps its longer side (``max_size``)."""
    canvas = tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=size)
    height, width = transform({"boxes": canvas})["boxes"].canvas_size  # the size, no pixels
    net = getattr(module, "net", None)
    try:
        fits = min(height, width) >= 1 and (
            not isinstance(net, nn.Module) or spatial_size(net, min(height, width)) > 0
        )
    except ValueError:  # spatial_size: a layer leaves no map
        fits = False
    if not fits:
        raise DataError(
            name,
            f"{size[1]}x{size[0]} pixels is too elongated for this model: its eval transform "
            f"resizes it to {width}x{height}, smaller than its network takes; crop the image "
            "or pad it nearer to a square",
        )


class Detector:
    """A trained model of any family that finds boxes in images (build it with :func:`load`)."""

    def __init__(
        self,
        module: pl.LightningModule,
        run_cfg: DictConfig,
        score_threshold: float | None = None,
        max_boxes: int | None = 10,
        class_threshold: float = 0.5,
        selective_search_mode: str = "fast",
        selective_search_max_side: int | None = 500,
    ) -> None:
        if not isinstance(module, WSLModule):
            raise TypeError(f"cannot detect with a {type(module).__name__}")
        self.module = module
        self.class_names = list(module.class_names)
        self.transform = build_transform(**run_cfg.data.eval_transform)
        # None: the family's (WSDDN 1e-3, refinement heads and the Localizer 0.05)
        self.score_threshold = (
            module.default_score_threshold if score_threshold is None else score_threshold
        )
        self.max_boxes = max_boxes
        self.class_threshold = class_threshold
        self.selective_search_mode = selective_search_mode
        self.selective_search_max_side = selective_search_max_side
        # WSDDN's, as trained
        self.proposal_filter = ProposalFilter.of(run_cfg.data.get("proposal_filter"))

    def _proposals(self, image: Tensor) -> Proposals:
        """Selective search on ``image`` (uint8 3xHxW RGB), as ``wsl.predict`` computes it."""
        bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[:, :, ::-1])
        return Proposals(
            selective_search(bgr, self.selective_search_mode, self.selective_search_max_side)
        )

    @torch.no_grad()
    def detect(
        self,
        images: ImageInput | Sequence[ImageInput],
        proposals: Sequence[Any] | None = None,
    ) -> list[Detections]:
        """The detections of each image (one image or a list).

        Accepted images: the path of an image file (a regular file) or a PIL image, both
        turned upright by their EXIF orientation (:func:`PIL.ImageOps.exif_transpose`, as
        phones and photo viewers show them); a ``uint8`` 3xHxW RGB tensor (0..255); a
        floating-point 3xHxW RGB tensor whose every value is finite and in [0, 1]. H and W
        are at least 1, and an image may not be so elongated that the model's eval transform
        leaves its network too few pixels. Any other input is refused before any work with one
        line naming it (``image <i>`` or its path): a :class:`ValueError` (:class:`DataError`
        for a file or a too elongated image), a :class:`TypeError` for another type.

        Boxes are 0-based inclusive pixels of each image as given (upright). WSDDN scores
        ``proposals`` (one (K, 4) array of 0-based inclusive x1, y1, x2, y2 boxes per image,
        in those pixels) filtered as in its training run; without them, selective search is
        computed on each image. The Localizer ignores ``proposals``.
        """
        if isinstance(images, str | Path | Image.Image | Tensor):
            images = [images]
        tensors = []
        for i, image in enumerate(images):
            name = str(image) if isinstance(image, str | Path) else f"image {i}"
            tensors.append(as_uint8_image(image, name))
            check_network_input(self.transform, self.module, tuple(tensors[-1].shape[1:]), name)
        if proposals is not None and len(proposals) != len(tensors):
            raise ValueError(f"{len(proposals)} proposal sets for {len(tensors)} images")
        found = None
        if self.module.needs_proposals:
            found = {
                i: self._proposals(image)
                if proposals is None
                else Proposals(np.asarray(proposals[i], dtype=np.float32).reshape(-1, 4))
                for i, image in enumerate(tensors)
            }
        predictor = model_predictor(
            self.module, self.transform, self.class_threshold, found, self.proposal_filter
        )
        results = []
        for i, image in enumerate(tensors):
            size = (image.shape[1], image.shape[2])  # the input is the working image
            found, _ = predictor(i, image, size)
            results.append(found.top(self.score_threshold, self.max_boxes))
        return results


def load(ckpt_path: str | Path, device: str = "auto", **settings: Any) -> Detector:
    """The detector of a checkpoint written by ``python -m wsl.train`` (any model family).

    ``device``: ``auto`` (the GPU when there is one), ``cpu``, ``cuda``, ...; ``settings`` go
    to :class:`Detector` (``score_threshold``, ``max_boxes``, ``class_threshold``,
    ``selective_search_mode``, ``selective_search_max_side``), with ``wsl.predict``'s defaults.
    """
    module, run_cfg = load_model(ckpt_path, resolve_device(device))
    return Detector(module, run_cfg, **settings)
