"""A supervised backbone for the generated classes: this project's stand-in for ImageNet weights.

    python -m wsl.benchmarks.crop_backbone --out backbones/alexnet_parts.pt

On VOC, WSDDN, OICR and PCL start from a network trained with full labels on ImageNet, whose
object-centric photos cover VOC's classes. This command makes the same for the generated
classes: it renders object-centric crops (:mod:`wsl.data.generated_crops`: one whole object per
crop, centred, on the look's background; seeds disjoint from every generated data set), trains
a torchvision AlexNet on them with full class labels (cross-entropy over the 1000 outputs, of
which the first C are the classes, so the state dict has torchvision's shapes), and saves its
state dict, which ``model.net.weights=<file>`` loads (:mod:`wsl.models.backbones`). It prints and
saves (``<out>.json``) the accuracy on held-out crops. Inputs are normalized with ImageNet's
mean and std, as the data transforms normalize every image. Minutes on a CPU.

Recipe: Adam (lr 1e-4, as the demos), batch 64, random horizontal flips and crops of 80-100 % of
the side resized back, dropout 0.5 as torchvision's AlexNet. The file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.transforms import v2

from wsl.data.generated_crops import render_crops
from wsl.data.generated_images import DIFFICULTIES
from wsl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsl.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

BATCH_SIZE = 64
LEARNING_RATE = 1e-4


def as_input(images: Tensor) -> Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float, normalized with ImageNet's mean and std."""
    pixels = images.permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return (pixels - mean[:, None, None]) / std[:, None, None]


def accuracy(model: nn.Module, inputs: Tensor, labels: Tensor, num_classes: int) -> float:
    """Share of ``inputs`` whose best score among the first ``num_classes`` outputs is its label."""
    model.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [model(chunk)[:, :num_classes].argmax(1) for chunk in inputs.split(256)]
        )
    return float((predicted == labels).float().mean())


def train_backbone(
    *,
    seed: int = 0,
    num_classes: int = 4,
    difficulty: str = "parts",
    num_crops: int = 2000,
    num_held_out: int = 400,
    size: int = 112,
    epochs: int = 3,
) -> tuple[nn.Module, dict[str, Any]]:
    """A torchvision AlexNet trained on crops ``0 .. num_crops - 1`` of ``seed`` and its
    accuracy on the next ``num_held_out`` crops (and other facts of the run)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    train = render_crops(range(num_crops), seed=seed, num_classes=num_classes,
                         difficulty=difficulty, size=size)  # fmt: skip
    held_out = render_crops(range(num_crops, num_crops + num_held_out), seed=seed,
                            num_classes=num_classes, difficulty=difficulty, size=size)  # fmt: skip
    train_inputs, train_labels = as_input(torch.from_numpy(train[0])), torch.from_numpy(train[1])
    test_inputs = as_input(torch.from_numpy(held_out[0]))
    test_labels = torch.from_numpy(held_out[1])
    model = models.alexnet(weights=None)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    augment = v2.Compose(
        [v2.RandomHorizontalFlip(), v2.RandomResizedCrop(size, scale=(0.64, 1.0), antialias=True)]
    )
    untrained = accuracy(model, test_inputs, test_labels, num_classes)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(num_crops)
        for step, batch in enumerate(order.split(BATCH_SIZE)):
            inputs = torch.stack([augment(image) for image in train_inputs[batch]])
            loss = nn.functional.cross_entropy(model(inputs), train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 10 == 0:
                log.info("epoch %d step %d: loss %.3f", epoch + 1, step, loss.item())
        log.info("epoch %d: held-out accuracy %.3f", epoch + 1,
                 accuracy(model, test_inputs, test_labels, num_classes))  # fmt: skip
    facts = {
        "held_out_accuracy": accuracy(model, test_inputs, test_labels, num_classes),
        "untrained_held_out_accuracy": untrained,
        "seed": seed, "num_classes": num_classes, "difficulty": difficulty,
        "num_crops": num_crops, "num_held_out": num_held_out, "size": size, "epochs": epochs,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    return model, facts


def save_backbone(model: nn.Module, facts: dict[str, Any], out: Path) -> None:
    """The state dict at ``out`` and ``facts`` at ``out`` with suffix ``.json``, atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as path:
        torch.save(model.state_dict(), path)
    with atomic_path(out.with_suffix(".json")) as path:
        Path(path).write_text(json.dumps(facts, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="the state dict file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--difficulty", choices=DIFFICULTIES, default="parts")
    parser.add_argument("--crops", type=int, default=2000, help="training crops")
    parser.add_argument("--held-out", type=int, default=400, help="held-out crops")
    parser.add_argument("--size", type=int, default=112, help="crop side in pixels")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model, facts = train_backbone(
        seed=args.seed, num_classes=args.num_classes, difficulty=args.difficulty,
        num_crops=args.crops, num_held_out=args.held_out, size=args.size, epochs=args.epochs,
    )  # fmt: skip
    save_backbone(model, facts, args.out)
    print(f"held-out crop accuracy {facts['held_out_accuracy']:.3f} "
          f"(untrained {facts['untrained_held_out_accuracy']:.3f}); wrote {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
