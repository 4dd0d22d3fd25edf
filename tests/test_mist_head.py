"""MIST as WSDDN plus a classify-and-regress head: its losses are the pseudo-label rule's on each
stream (stream 0 weighted 3), its detections are regressed boxes (the streams' mean deltas,
decoded), clipped to the image and averaged over the test-time views."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from wsl.models.mist import MISTHeads
from wsl.models.wsddn import WSDDN
from wsl.pseudo_labels.mist import mist_loss, mist_targets
from wsl.structures.box_coder import decode_deltas
from wsl.structures.boxes import boxes_to_original, hflip_boxes

NUM_CLASSES = 2


def head_and_regions(seed: int = 0) -> tuple[MISTHeads, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    head = MISTHeads(8, NUM_CLASSES)
    with torch.no_grad():
        for layer in (*head.classifiers, *head.regressors):
            layer.weight.normal_(std=0.5)
    x1y1 = torch.randint(0, 40, (20, 2)).float()
    boxes = torch.cat([x1y1, x1y1 + torch.randint(5, 30, (20, 2))], dim=1)
    return head, torch.randn(20, 8), boxes


def test_losses_are_each_streams_rule_and_stream_0_weighs_three() -> None:
    head, features, boxes = head_and_regions()
    output = head(features)
    region_image = torch.tensor([0] * 12 + [1] * 8)
    wsddn_scores = torch.rand(20, NUM_CLASSES)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    terms = head.losses(output, boxes, region_image, wsddn_scores, labels)
    assert list(terms) == [f"{kind}_{k}" for k in range(3) for kind in ("refine_loss", "box_loss")]
    previous = [wsddn_scores, output.probs[0][:, 1:], output.probs[1][:, 1:]]
    for k in range(3):
        per_image = []
        for rows, y in ((slice(0, 12), labels[0]), (slice(12, 20), labels[1])):
            targets = mist_targets(boxes[rows], previous[k][rows].detach(), y)
            per_image.append(
                mist_loss(output.logits[k][rows], output.deltas[k][rows], boxes[rows], targets)
            )
        weight = 3.0 if k == 0 else 1.0
        cls, reg = (torch.stack(t).mean() * weight for t in zip(*per_image, strict=True))
        torch.testing.assert_close(terms[f"refine_loss_{k}"], cls)
        torch.testing.assert_close(terms[f"box_loss_{k}"], reg)
        assert reg > 0  # the random deltas miss their targets
    terms[f"box_loss_{2}"].backward()
    assert head.regressors[2].weight.grad.abs().sum() > 0
    assert head.regressors[0].weight.grad is None  # each stream's box loss is its own


def test_boxes_decode_the_mean_of_the_streams_deltas() -> None:
    head, features, boxes = head_and_regions()
    output = head(features)
    regressed = head.boxes(output, boxes)
    assert regressed.shape == (20, NUM_CLASSES, 4)
    mean = torch.stack(output.deltas).mean(dim=0)
    want = decode_deltas(mean, boxes).reshape(20, NUM_CLASSES + 1, 4)[:, 1:]
    torch.testing.assert_close(regressed, want)
    last = decode_deltas(output.deltas[-1], boxes).reshape(20, NUM_CLASSES + 1, 4)[:, 1:]
    torch.testing.assert_close(head.boxes(output, boxes, stream=-1), last)
    assert not torch.allclose(regressed, last)
    zero = output._replace(deltas=[torch.zeros_like(d) for d in output.deltas])
    torch.testing.assert_close(head.boxes(zero, boxes), boxes[:, None].expand(20, NUM_CLASSES, 4))
    scores = head.scores(output)
    torch.testing.assert_close(scores, torch.stack(output.probs).mean(dim=0)[:, 1:])


def mist_wsddn(**settings: Any) -> WSDDN:
    torch.manual_seed(0)
    refinement = {"_target_": "wsl.models.mist.MISTHeads"}
    return WSDDN(NUM_CLASSES, weights="none", dropout=0.0, refinement=refinement,
                 inference={"top_k": None}, **settings).eval()  # fmt: skip


def a_batch() -> dict[str, Any]:
    proposals = torch.tensor([[0.0, 0.0, 40.0, 40.0], [20.0, 10.0, 63.0, 50.0], [5, 30, 30, 63]])
    return {
        "image": torch.rand(1, 3, 64, 64), "proposals": [proposals], "image_id": ["1"],
        "labels": torch.tensor([[1.0, 0.0]]), "label_weights": torch.ones(1, 2),
        "input_size": [(64, 64)], "original_size": [(128, 96)],
    }  # fmt: skip


def test_detections_are_regressed_boxes_clipped_to_the_image_on_disk() -> None:
    net, batch = mist_wsddn(), a_batch()
    with torch.no_grad():
        net.refinement.regressors[1].bias[4:8] = torch.tensor([5.0, -3.0, 2.0, 1.0])  # class 0
        [(boxes, scores, classes)] = net.predict(batch).detections
        output = net(batch["image"], batch["proposals"])
        heads = net.refinement(output.features)
        regressed = net.refinement.boxes(heads, batch["proposals"][0])
    on_disk = boxes_to_original(regressed.reshape(-1, 4), (64, 64), (128, 96)).reshape(3, 2, 4)
    on_disk = on_disk.clamp(min=0).minimum(torch.tensor([95.0, 127.0, 95.0, 127.0]))
    assert 0 < len(boxes) <= 6  # 3 regions x 2 classes, less what NMS drops
    for box, score, c in zip(boxes, scores, classes, strict=True):
        region = (on_disk[:, c] == box).all(dim=1).nonzero().squeeze(1)
        assert len(region) == 1  # each detection is a regressed box of its class
        assert score == pytest.approx(net.refinement.scores(heads)[region[0], c].item())
    proposals = boxes_to_original(batch["proposals"][0], (64, 64), (128, 96))
    moved = (on_disk[:, 0] != proposals).any(dim=1)
    assert moved.all() and boxes[:, 2].max() <= 95 and boxes[:, 3].max() <= 127


def test_flipped_views_average_the_boxes_mapped_back() -> None:
    """A flipped view's regressed boxes, flipped back, are averaged with the plain view's."""
    net, batch = mist_wsddn(tta={"flip": True}), a_batch()
    with torch.no_grad():
        for regressor in net.refinement.regressors:
            regressor.bias[4:8] = torch.tensor([2.0, 1.0, 0.5, 0.0])
        _, [boxes] = net.view_scores(batch)[0]["model"]
        plain = mist_wsddn(tta={"flip": False})
        plain.load_state_dict(net.state_dict())
        [plain_boxes] = plain.view_scores(batch)[0]["model"][1]
        flipped_batch = {**batch, "image": batch["image"].flip(-1),
                         "proposals": [hflip_boxes(batch["proposals"][0], 64)]}  # fmt: skip
        [mirrored] = plain.view_scores(flipped_batch)[0]["model"][1]
    unflipped = hflip_boxes(mirrored.reshape(-1, 4), 96).reshape(mirrored.shape)
    torch.testing.assert_close(boxes, (plain_boxes + unflipped) / 2)
    assert not torch.allclose(plain_boxes, unflipped)  # dx moves the two views apart
