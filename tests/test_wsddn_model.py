"""WSDDN: shapes, the two softmaxes, ROI coordinates, box scores, loss, regulariser, gradients."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from tests.support import (
    BOXES,
    CLASS0,
    CLASS1,
    FEATURES,
    SCORES,
    random_boxes,
    small_alexnet_state,
)
from wsl.models.roi import pool_regions, softmax_per_image
from wsl.models.wsddn import EPS, WSDDN, spatial_regulariser, wsddn_loss

NUM_CLASSES = 5
SIZE = 160  # AlexNet conv5 maps of 9x9 cells


@contextmanager
def replaced(parameter: Tensor, value: Tensor) -> Iterator[None]:
    """``parameter`` holds ``value`` inside the block, and its own values again after it."""
    saved = parameter.detach().clone()
    with torch.no_grad():
        parameter.copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            parameter.copy_(saved)


@pytest.fixture(scope="module")
def model() -> WSDDN:
    torch.manual_seed(0)
    return WSDDN(NUM_CLASSES, weights="none").eval()


@pytest.fixture(scope="module")
def batch() -> tuple[Tensor, list[Tensor]]:
    """Two images with 7 and 11 proposals."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, SIZE, SIZE, generator=g)
    return images, [random_boxes(7, SIZE, g), random_boxes(11, SIZE, g)]


def test_output_shapes(model: WSDDN, batch: tuple[Tensor, list[Tensor]]) -> None:
    images, proposals = batch
    with torch.no_grad():
        out = model(images, proposals)
    assert out.image_scores.shape == (2, NUM_CLASSES)
    for regions in (out.region_scores, out.classification, out.detection):
        assert regions.shape == (18, NUM_CLASSES)
    assert out.features.shape == (18, 4096)
    assert out.region_image.tolist() == [0] * 7 + [1] * 11


def test_the_two_softmaxes_and_their_product(
    model: WSDDN, batch: tuple[Tensor, list[Tensor]]
) -> None:
    images, proposals = batch
    with torch.no_grad():
        out = model(images, proposals)
    ones = torch.ones(NUM_CLASSES)
    torch.testing.assert_close(out.classification.sum(1), torch.ones(18))  # over classes
    torch.testing.assert_close(out.detection[:7].sum(0), ones)  # over image 0's regions
    torch.testing.assert_close(out.detection[7:].sum(0), ones)  # over image 1's regions
    torch.testing.assert_close(out.region_scores, out.classification * out.detection)
    sums = torch.stack([out.region_scores[:7].sum(0), out.region_scores[7:].sum(0)])
    torch.testing.assert_close(out.image_scores, sums)
    assert ((out.image_scores > 0) & (out.image_scores < 1)).all()


def test_images_of_a_batch_do_not_share_the_region_softmax(
    model: WSDDN, batch: tuple[Tensor, list[Tensor]]
) -> None:
    images, proposals = batch
    with torch.no_grad():
        together = model(images, proposals)
        alone = [model(images[i : i + 1], proposals[i : i + 1]) for i in range(2)]
    torch.testing.assert_close(together.detection[:7], alone[0].detection)
    torch.testing.assert_close(together.region_scores[7:], alone[1].region_scores)
    torch.testing.assert_close(together.image_scores[1], alone[1].image_scores[0])


def test_softmax_per_image_by_hand() -> None:
    logits = torch.tensor([[0.0], [math.log(3)], [1000.0], [5.0], [5.0]])  # 1000: no overflow
    out = softmax_per_image(logits, torch.tensor([0, 0, 1, 2, 2]), 3)
    torch.testing.assert_close(out, torch.tensor([[0.25], [0.75], [1.0], [0.5], [0.5]]))


def test_image_scores_are_clamped_away_from_0_and_1(
    model: WSDDN, batch: tuple[Tensor, list[Tensor]]
) -> None:
    images, proposals = batch
    bias = torch.tensor([100.0, -100.0, 0.0, 0.0, 0.0])  # class 0 certain, class 1 impossible
    with torch.no_grad(), replaced(model.fc8c.bias, bias):
        scores = model(images, proposals).image_scores
    assert torch.equal(scores[:, 0], torch.full((2,), 1 - EPS))
    assert torch.equal(scores[:, 1], torch.full((2,), EPS))


@pytest.mark.parametrize("op", ["pool", "align"])
def test_both_roi_ops_run(op: str, batch: tuple[Tensor, list[Tensor]]) -> None:
    images, proposals = batch
    torch.manual_seed(0)
    with torch.no_grad():
        out = WSDDN(NUM_CLASSES, weights="none", roi_op=op).eval()(images, proposals)
    assert out.region_scores.shape == (18, NUM_CLASSES)
    assert out.image_scores.isfinite().all()


def test_roi_coordinates_of_pool_and_align() -> None:
    # Cell (y, x) of the map holds x. Box [16, 16, 31, 31] holds the pixels of cell (1, 1).
    maps = torch.arange(4.0).expand(1, 1, 4, 4)
    box, image = torch.tensor([[16.0, 16.0, 31.0, 31.0]]), torch.tensor([0])
    # roi_pool rounds both ends (Fast R-CNN): round(16/16) = 1, round(31/16) = 2, so cells 1-2.
    pooled = pool_regions(maps, box, image, output_size=2, stride=16, op="pool")
    assert pooled.flatten().tolist() == [1.0, 2.0, 1.0, 2.0]
    # [8, 23]: round(0.5) = 1 (half away from zero) and round(1.44) = 1, so cell 1 only.
    inner = pool_regions(maps, box - 8, image, output_size=2, stride=16, op="pool")
    assert inner.flatten().tolist() == [1.0] * 4
    # roi_align(aligned=True) reads [16, 32): cell 1 (centre 1 after the -0.5 shift) +- 0.5;
    # one bilinear sample per bin, at 0.75 and 1.25. Without the +1 on x2: 0.734, 1.203.
    aligned = pool_regions(maps, box, image, output_size=2, stride=16, op="align")
    assert aligned[0, 0, 0].tolist() == pytest.approx([0.75, 1.25], abs=1e-6)
    assert aligned.mean().item() == pytest.approx(1.0, abs=1e-6)


def test_batch_index_of_each_roi() -> None:
    maps = torch.stack([torch.full((1, 4, 4), 3.0), torch.full((1, 4, 4), 7.0)])
    boxes = torch.tensor([[0.0, 0.0, 63.0, 63.0]] * 3)
    pooled = pool_regions(maps, boxes, torch.tensor([0, 1, 1]), output_size=2, stride=16)
    assert pooled.amax((1, 2, 3)).tolist() == [3.0, 7.0, 7.0]


def test_conv1_frozen_and_heads_initialized() -> None:
    with torch.device("meta"):  # parameters only: no memory, no init time
        frozen = WSDDN(NUM_CLASSES, weights="none")
        trained = WSDDN(NUM_CLASSES, weights="none", freeze_conv1=False)
    convs = [m for m in frozen.features if isinstance(m, nn.Conv2d)]
    assert [c.weight.requires_grad for c in convs] == [False, True, True, True, True]
    assert not convs[0].bias.requires_grad
    assert all(p.requires_grad for p in trained.parameters())


def test_new_heads_are_normal_std_001_with_zero_bias(model: WSDDN) -> None:
    for head in (model.fc8c, model.fc8d):
        assert head.weight.shape == (NUM_CLASSES, 4096)
        assert head.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert torch.equal(head.bias, torch.zeros(NUM_CLASSES))
    assert not torch.equal(model.fc8c.weight, model.fc8d.weight)


def test_pretrained_fc6_fc7_come_from_the_weights_file(tmp_path: Path) -> None:
    state = small_alexnet_state()
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    wsddn = WSDDN(NUM_CLASSES, weights=str(path))
    assert torch.equal(wsddn.features[0].weight, state["features.0.weight"])
    assert torch.equal(wsddn.fc6.weight, state["classifier.1.weight"])
    assert torch.equal(wsddn.fc7.bias, state["classifier.4.bias"])


def test_vgg16_pools_7x7_rois() -> None:
    with torch.device("meta"):  # shapes only: VGG16 is 138M parameters
        vgg = WSDDN(NUM_CLASSES, backbone="vgg16", weights="none")
        out = vgg(torch.empty(1, 3, 224, 224), [torch.zeros(3, 4)])
    assert (vgg.roi_size, vgg.stride, vgg.fc6.in_features) == (7, 16, 512 * 7 * 7)
    assert out.region_scores.shape == (3, NUM_CLASSES)


def test_box_scores_scale_the_pooled_features(
    model: WSDDN, batch: tuple[Tensor, list[Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, proposals = batch
    zeros = [torch.zeros(7), torch.zeros(11)]
    scores = [torch.linspace(0, 0.3, 7), torch.full((11,), 0.05)]
    with torch.no_grad():
        plain = model(images, proposals)
        monkeypatch.setattr(model, "use_proposal_scores", True)
        zero = model(images, proposals, zeros)
        # Without fc6/fc7 biases, ReLU(W a x) = a ReLU(W x) for a > 0: fc7 scales by 1 + 10 s.
        with (
            replaced(model.fc6.bias, torch.zeros(4096)),
            replaced(model.fc7.bias, torch.zeros(4096)),
        ):
            unbiased = model(images, proposals, zeros)
            scaled = model(images, proposals, scores)
    torch.testing.assert_close(zero.region_scores, plain.region_scores)  # coefficient 1
    gain = 1 + 10 * torch.cat(scores)
    torch.testing.assert_close(scaled.features, unbiased.features * gain[:, None])
    assert not torch.allclose(scaled.region_scores, unbiased.region_scores)


def test_box_scores_missing_or_misshaped(
    model: WSDDN, batch: tuple[Tensor, list[Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, proposals = batch
    monkeypatch.setattr(model, "use_proposal_scores", True)
    with pytest.raises(ValueError, match="needs proposal_scores"):
        model(images, proposals)
    with pytest.raises(ValueError, match=r"image 1 must have shape \(11,\)"):
        model(images, proposals, [torch.zeros(7), torch.zeros(10)])


def test_bad_proposals_are_refused(model: WSDDN, batch: tuple[Tensor, list[Tensor]]) -> None:
    images, proposals = batch
    with pytest.raises(ValueError, match="got 1 proposal tensors for 2 images"):
        model(images, proposals[:1])
    with pytest.raises(ValueError, match="proposals of image 1 must be a non-empty"):
        model(images, [proposals[0], torch.zeros(0, 4)])


def test_bce_loss_by_hand() -> None:
    scores = torch.tensor([[0.9, 0.2], [0.4, 0.7]])
    labels = torch.tensor([[1, 0], [0, 1]])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.7)) / 4
    assert wsddn_loss(scores, labels).item() == pytest.approx(expected, rel=1e-6)
    weighted = -(2 * math.log(0.9) + math.log(0.8) + 2 * math.log(0.6) + math.log(0.7)) / 4
    loss = wsddn_loss(scores, labels, weights=torch.tensor([2.0, 1.0]))
    assert loss.item() == pytest.approx(weighted, rel=1e-6)


def test_spatial_regulariser_by_hand() -> None:
    image = torch.zeros(5, dtype=torch.long)
    value = spatial_regulariser(FEATURES, SCORES, BOXES, image, torch.tensor([[1, 0]]))
    assert value.item() == pytest.approx(CLASS0, rel=1e-6)
    value = spatial_regulariser(FEATURES, SCORES, BOXES, image, torch.tensor([[0, 1]]))
    assert value.item() == pytest.approx(CLASS1, rel=1e-6)
    value = spatial_regulariser(FEATURES, SCORES, BOXES, image, torch.tensor([[1, 1]]))
    assert value.item() == pytest.approx(CLASS0 + CLASS1, rel=1e-6)
    # Below 0.6, region 4 (IoU 0.6 with region 0) joins class 0: + 0.5 * 0.05^2 * (64 + 81).
    value = spatial_regulariser(FEATURES, SCORES, BOXES, image, torch.tensor([[1, 0]]), 0.59)
    assert value.item() == pytest.approx(CLASS0 + 0.5 * 0.05**2 * 145, rel=1e-6)


def test_spatial_regulariser_zero_for_identical_near_features() -> None:
    image, labels = torch.zeros(5, dtype=torch.long), torch.tensor([[1, 1]])
    same = FEATURES.clone()
    same[[1, 3, 4]] = FEATURES[0]  # every region near the top one has its features
    assert spatial_regulariser(same, SCORES, BOXES, image, labels).item() == 0.0
    assert spatial_regulariser(FEATURES, SCORES, BOXES, image, torch.zeros(1, 2)).item() == 0.0


def test_spatial_regulariser_averages_images_and_keeps_the_top_regions() -> None:
    # Image 0 as above; image 1: 12 copies of box 0, scores falling, features 0, 1, 2, ...: only
    # the 9 best after the top one count: sum_{i=1..9} 0.5 * s_i^2 * i^2.
    scores1 = torch.linspace(0.6, 0.05, 12)[:, None].expand(12, 2)
    features1 = torch.arange(12.0)[:, None].expand(12, 2) / math.sqrt(2)
    features = torch.cat([FEATURES, features1])
    scores = torch.cat([SCORES, scores1])
    boxes = torch.cat([BOXES, BOXES[:1].expand(12, 4)])
    image = torch.tensor([0] * 5 + [1] * 12)
    labels = torch.tensor([[1, 0], [1, 0]])
    image1 = sum(0.5 * scores1[i, 0].item() ** 2 * i**2 for i in range(1, 10))
    value = spatial_regulariser(features, scores, boxes, image, labels)
    assert value.item() == pytest.approx((CLASS0 + image1) / 2, rel=1e-5)
    every = sum(0.5 * scores1[i, 0].item() ** 2 * i**2 for i in range(1, 12))
    value = spatial_regulariser(features, scores, boxes, image, labels, top_regions=None)
    assert value.item() == pytest.approx((CLASS0 + every) / 2, rel=1e-5)


def test_spatial_regulariser_matches_a_loop_over_images_and_classes() -> None:
    g = torch.Generator().manual_seed(3)
    counts = [6, 15, 9]
    boxes = torch.cat([random_boxes(k, 48, g) for k in counts])
    image = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    scores, features = torch.rand(30, 4, generator=g), torch.randn(30, 8, generator=g)
    labels = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]])
    expected = 0.0
    for n in range(3):
        rows = (image == n).nonzero().flatten()
        for c in labels[n].nonzero().flatten():
            order = rows[scores[rows, c].argsort(descending=True)][:10]
            top = order[0]
            for r in order[1:]:
                if _voc_iou(boxes[r], boxes[top]) > 0.6:
                    distance = (features[r] - features[top]).pow(2).sum()
                    expected += 0.5 * scores[r, c].item() ** 2 * distance.item()
    value = spatial_regulariser(features, scores, boxes, image, labels, iou_threshold=0.6)
    assert expected > 0
    assert value.item() == pytest.approx(expected / 3, rel=1e-5)


def _voc_iou(a: Tensor, b: Tensor) -> float:
    iw = max(0.0, min(a[2], b[2]).item() - max(a[0], b[0]).item() + 1)
    ih = max(0.0, min(a[3], b[3]).item() - max(a[1], b[1]).item() + 1)
    area = lambda box: (box[2] - box[0] + 1).item() * (box[3] - box[1] + 1).item()  # noqa: E731
    return iw * ih / (area(a) + area(b) - iw * ih)


def test_spatial_regulariser_refuses_unordered_regions() -> None:
    with pytest.raises(ValueError, match="grouped by image"):
        spatial_regulariser(
            FEATURES, SCORES, BOXES, torch.tensor([0, 1, 0, 1, 1]), torch.ones(2, 2)
        )


def test_gradients_reach_the_heads_fc6_and_conv2_not_conv1(
    batch: tuple[Tensor, list[Tensor]],
) -> None:
    images, proposals = batch
    torch.manual_seed(0)
    wsddn = WSDDN(NUM_CLASSES, weights="none").train()
    out = wsddn(images, proposals)
    labels = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    boxes = torch.cat(proposals)
    regulariser = spatial_regulariser(
        out.features, out.region_scores, boxes, out.region_image, labels
    )
    (wsddn_loss(out.image_scores, labels) + regulariser).backward()
    for layer in (wsddn.fc8c, wsddn.fc8d, wsddn.fc6, wsddn.features[3]):  # features[3]: conv2
        assert layer.weight.grad is not None
        assert layer.weight.grad.abs().sum() > 0
    assert wsddn.features[0].weight.grad is None  # conv1 frozen
