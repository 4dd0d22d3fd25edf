"""Torchvision ImageNet backbones (AlexNet, VGG16) cut for weakly supervised localization.

Both are used without their last max-pool: the Localizer (Oquab et al.) puts its own
convolutions on AlexNet's conv5, and WSDDN (Bilen & Vedaldi) ROI-pools conv5 into the
pretrained fc6 and fc7. Inputs are RGB in [0, 1] normalized with the ImageNet mean and std, as
for every torchvision classifier.

``vgg16_dilated`` is VGG16 at stride 8, the body of both OICR/PCL codes: pool4 removed and
conv5_1 ... conv5_3 dilated by 2 with padding 2, so conv5 sees the receptive field it was
trained with on a map twice as fine (ppengtang/oicr ``models/VGG16/train.prototxt`` lines
300-311: pool4 commented out, 327-328, 353-354, 379-380: ``pad: 2``, ``dilation: 2``; 399:
ROI pooling at ``spatial_scale: 0.125``; pcl.pytorch 0.4.0 ``lib/modeling/vgg16.py``
lines 40-61, ``dilated_conv5_body``: conv4 without pool, conv5 ``padding=2, dilation=2``,
``spatial_scale = 1. / 8.``). Dilation changes no parameter shape, so VGG16's weights load
unchanged (``weights`` reads a ``vgg16`` state dict); module names are VGG16's
(``features.24`` is conv5_1 in both).

``weights`` picks the starting parameters:

- ``"imagenet"``: torchvision's ``IMAGENET1K_V1`` weights, downloaded once (hash-checked) into
  ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``) and read from there,
  without network, afterwards;
- ``"none"`` (or ``None``): torchvision's random initialization;
- any other string: the path of a local file holding the *full* torchvision state dict of the
  model (keys ``features.0.weight`` ... ``classifier.6.bias``, as written by
  ``torch.save(model.state_dict(), path)``), alone or under a ``"model"`` key (torchvision's
  reference scripts) or a ``"state_dict"`` key. It is read with ``weights_only=True``, so no
  pickled code runs, and checked strictly: every key with its shape, and no other, so a file of
  another model fails naming its missing, unexpected and mis-shaped keys instead of half loading.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models import WeightsEnum

_SHOWN_KEYS = 8  # keys named in a mismatch error, per kind
_SPATIAL = (nn.Conv2d, nn.MaxPool2d)  # the layers that change the size of a map


class _Spec(NamedTuple):
    build: Callable[..., nn.Module]  # torchvision builder
    imagenet: WeightsEnum  # the weights "imagenet" means
    fc6: int  # index of fc6 in model.classifier
    fc7: int  # index of fc7 in model.classifier
    dilated_conv5: bool = False  # stride 8: the max-pool before conv5 removed, conv5 dilated


_SPECS = {
    "alexnet": _Spec(models.alexnet, models.AlexNet_Weights.IMAGENET1K_V1, fc6=1, fc7=4),
    "vgg16": _Spec(models.vgg16, models.VGG16_Weights.IMAGENET1K_V1, fc6=0, fc7=3),
    "vgg16_dilated": _Spec(
        models.vgg16, models.VGG16_Weights.IMAGENET1K_V1, fc6=0, fc7=3, dilated_conv5=True
    ),
}
BACKBONES = tuple(_SPECS)  # the names build_backbone takes
CONV5_DILATION = 2  # train.prototxt conv5_x "dilation: 2"; vgg16.py "dilation=2"


class Backbone(NamedTuple):
    """The pretrained parts of a torchvision classifier that the models reuse."""

    features: nn.Sequential  # conv1 ... conv5 + ReLU (last max-pool removed)
    fc6: nn.Linear  # takes the flattened (channels, roi_size, roi_size) grid
    fc7: nn.Linear
    channels: int  # channels of the feature maps: 256 (AlexNet), 512 (VGG16)
    roi_size: int  # side of the grid fc6 was trained on: 6 (AlexNet), 7 (VGG16)
    stride: int  # input pixels per feature-map cell: 16, 8 for vgg16_dilated
    # the convolutions of each block of the torchvision model (a block ends at a max-pool):
    # AlexNet conv1 | conv2 | conv3-5; VGG16 conv1_x | conv2_x | ... | conv5_x
    conv_blocks: tuple[tuple[nn.Conv2d, ...], ...] = ()


def build_backbone(name: str, weights: str | None = "imagenet") -> Backbone:
    """Builds torchvision model ``name`` (one of :data:`BACKBONES`) with ``weights``, cut into
    parts."""
    spec = _spec(name)
    state = load_backbone_weights(name, weights)
    model = spec.build(weights=None)
    if state is not None:
        model.load_state_dict(state)
    blocks = conv_blocks(model.features)
    features = model.features[:-1]  # a slice keeps the module names (features.24, ...)
    if spec.dilated_conv5:
        features = _dilate_last_block(features)
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    return Backbone(
        features=features,
        fc6=model.classifier[spec.fc6],
        fc7=model.classifier[spec.fc7],
        channels=convs[-1].out_channels,
        roi_size=_side(model.avgpool.output_size),
        stride=math.prod(_side(m.stride) for m in features if isinstance(m, _SPATIAL)),
        conv_blocks=blocks,
    )


def conv_blocks(features: nn.Sequential) -> tuple[tuple[nn.Conv2d, ...], ...]:
    """The convolutions of ``features`` grouped into blocks, each ended by a max-pool."""
    blocks: list[list[nn.Conv2d]] = [[]]
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            blocks[-1].append(layer)
        elif isinstance(layer, nn.MaxPool2d):
            blocks.append([])
    return tuple(tuple(block) for block in blocks if block)


def _dilate_last_block(features: nn.Sequential) -> nn.Sequential:
    """``features`` (the last max-pool already removed) without its remaining last max-pool
    (VGG16's pool4) and with the convolutions after it dilated by 2, padded to keep their map
    size (``padding = dilation (kernel - 1) / 2``): stride 8 instead of 16."""
    names = list(features._modules)
    last_pool = max(i for i, n in enumerate(names) if isinstance(features[i], nn.MaxPool2d))
    for layer in features[last_pool + 1 :]:
        if isinstance(layer, nn.Conv2d):
            layer.dilation = (CONV5_DILATION, CONV5_DILATION)
            layer.padding = tuple(CONV5_DILATION * (k - 1) // 2 for k in layer.kernel_size)
    kept = [(n, features._modules[n]) for i, n in enumerate(names) if i != last_pool]
    return nn.Sequential(OrderedDict(kept))


def alexnet_features(weights: str | None = "imagenet") -> nn.Sequential:
    """AlexNet conv1 ... conv5 + ReLU: 256 channels, stride 16 (31x31 maps at 512x512)."""
    return build_backbone("alexnet", weights).features


def vgg16_features(weights: str | None = "imagenet") -> nn.Sequential:
    """VGG16 conv1_1 ... conv5_3 + ReLU: 512 channels, stride 16 (32x32 maps at 512x512)."""
    return build_backbone("vgg16", weights).features


def load_backbone_weights(name: str, weights: str | None) -> dict[str, Tensor] | None:
    """The state dict ``weights`` names for torchvision model ``name``; None for random init
    (``vgg16_dilated`` reads VGG16's)."""
    spec = _spec(name)
    if weights is None or weights == "none":
        return None
    if weights == "imagenet":
        return _download(name, spec.imagenet)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} weights file {path} does not exist; weights must be 'imagenet', 'none' "
            "or the path of a torchvision state dict file"
        )
    state = _read_state_dict(path)
    with torch.device("meta"):  # the expected keys and shapes, without allocating the model
        expected = spec.build(weights=None).state_dict()
    _check_keys(state, expected, f"{name} weights file {path}")
    return state


def spatial_size(layers: nn.Module, size: int) -> int:
    """Side of the output of the convolutions and max-pools in ``layers`` for a square input.

    Applies, in module order, ``floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1``
    (PyTorch's rule with ``ceil_mode=False``, as in torchvision's AlexNet and VGG).
    """
    input_size = size
    for m in layers.modules():
        if isinstance(m, _SPATIAL):
            k, s, p, d = (_side(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
            size = (size + 2 * p - d * (k - 1) - 1) // s + 1
            if size < 1:
                raise ValueError(f"a {input_size}-pixel input is too small: {m} leaves no map")
    return size


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_SPECS)}")
    return _SPECS[name]


def _side(value: int | tuple[int, ...]) -> int:
    """The first (square) side of a torch size argument given as an int or a tuple."""
    return value if isinstance(value, int) else value[0]


def _download(name: str, weights: WeightsEnum) -> dict[str, Tensor]:
    """Torchvision's weights from its cache, else downloaded; without network, says what to do."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as err:  # URLError, DNS, refused connection, unwritable cache
        raise RuntimeError(
            f"could not download the ImageNet weights of {name} from {weights.url} ({err}). "
            f"Without network, pass a local file instead (weights=/path/to/{cached.name}, a "
            f"torchvision state dict), or copy that file to {cached}, where torchvision reads "
            "it without downloading."
        ) from err


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict stored alone or under a "model" / "state_dict" key of a checkpoint."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for a file it cannot read
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise ValueError(
            f"cannot read weights file {path} as a torch file of tensors only ({reason}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from err
    if isinstance(saved, dict):
        for key in ("model", "state_dict"):
            if isinstance(saved.get(key), dict):
                saved = saved[key]
                break
    if not isinstance(saved, dict) or not all(isinstance(v, Tensor) for v in saved.values()):
        raise ValueError(
            f"weights file {path} holds no state dict (a dict of tensors, alone or under a "
            "'model' or 'state_dict' key); save it with torch.save(model.state_dict(), path)"
        )
    return saved


def _check_keys(state: dict[str, Tensor], expected: dict[str, Tensor], source: str) -> None:
    """Raises if ``state`` lacks a key of ``expected``, has another one, or a different shape."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    kinds = {"missing": missing, "unexpected": unexpected, "mis-shaped": misshaped}
    problems = [
        f"{len(keys)} {kind}: {', '.join(keys[:_SHOWN_KEYS])}{', ...' * (len(keys) > _SHOWN_KEYS)}"
        for kind, keys in kinds.items()
        if keys
    ]
    if problems:
        raise ValueError(
            f"{source} does not match the torchvision model: {'; '.join(problems)}. "
            "Expected keys like features.0.weight, as saved by torch.save(model.state_dict(), path)"
        )
