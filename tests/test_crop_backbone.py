"""The supervised crop backbone (the benchmark's ImageNet stand-in): its crops, its learning
against an untrained network, and a state dict that the WSDDN backbone loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wsl.benchmarks.crop_backbone import save_backbone, train_backbone
from wsl.data.generated_crops import render_crops
from wsl.models.backbones import build_backbone


def test_crops_are_one_centred_object_per_class_in_turn_and_repeat_per_seed() -> None:
    images, labels = render_crops(range(10, 18), seed=5, num_classes=4, difficulty="parts", size=48)
    assert images.shape == (8, 48, 48, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [2, 3, 0, 1, 2, 3, 0, 1])  # crop i is class i mod 4
    again, _ = render_crops(range(10, 18), seed=5, num_classes=4, difficulty="parts", size=48)
    np.testing.assert_array_equal(images, again)
    other, _ = render_crops(range(10, 18), seed=6, num_classes=4, difficulty="parts", size=48)
    assert (images != other).any()
    # the object fills the middle: the centre is far from the corners' background colour
    centre = images[:, 20:28, 20:28].reshape(8, -1, 3).mean(1)
    corners = images[:, :4, :4].reshape(8, -1, 3).mean(1)
    assert (np.abs(centre - corners).max(axis=1) > 30).all()


@pytest.mark.slow  # about 2 minutes: the command's own crops and budget
def test_backbone_learns_the_classes() -> None:
    _, facts = train_backbone()
    assert facts["untrained_held_out_accuracy"] < 0.5  # 4 classes: chance 0.25
    assert facts["held_out_accuracy"] > 0.9


def test_saved_backbone_is_a_torchvision_state_dict_the_wsddn_backbone_loads(
    tmp_path: Path,
) -> None:
    model, facts = train_backbone(num_crops=64, num_held_out=16, size=64, epochs=1)
    assert facts["num_crops"] == 64 and 0 <= facts["held_out_accuracy"] <= 1
    out = tmp_path / "alexnet_crops.pt"
    save_backbone(model, facts, out)
    backbone = build_backbone("alexnet", str(out))  # strict: every key with its shape
    torch.testing.assert_close(backbone.fc6.weight, model.classifier[1].weight)
    assert json.loads(out.with_suffix(".json").read_text()) == facts
