"""The second stage's supervised detector (wsl/models/supervised.py): torchvision's Fast R-CNN
(the batch's proposals) and Faster R-CNN (an RPN) as a model family, on tiny inputs (64x64
images, AlexNet without pretrained weights, a few proposals)."""

from __future__ import annotations

from typing import Any

import hydra
import pytest
import torch

from tests.support import compose_cfg
from wsl.models.supervised import BoxHeads, StrideAnchorGenerator, SupervisedDetector
from wsl.structures.boxes import voc_iou
from wsl.structures.detections import Detections

MODES = ("fast_rcnn", "faster_rcnn")
RPN_LOSSES = {"loss_objectness", "loss_rpn_box_reg"}
BOX_LOSSES = {"loss_classifier", "loss_box_reg"}
SIDE = 64
# inclusive boxes in input pixels: per image two on its object (IoU 1 and about 0.8), two that
# touch it (IoU about 0.15: background) and one far from it (IoU below 0.1)
PROPOSALS = [
    [[16, 16, 47, 47], [14, 18, 45, 49], [30, 30, 63, 63], [0, 0, 31, 31], [40, 0, 63, 20]],
    [[4, 30, 27, 60], [6, 28, 29, 58], [16, 20, 45, 45], [0, 0, 20, 35], [40, 0, 63, 25]],
]


def detector(mode: str, **settings: Any) -> SupervisedDetector:
    """A small detector: AlexNet without weights, 3 classes; small anchors for 64-pixel images."""
    settings = {"backbone": "alexnet", "weights": "none", **settings}
    if mode == "faster_rcnn":
        settings = {"anchor_sizes": (16, 32), "aspect_ratios": (0.5, 1.0, 2.0), **settings}
    return SupervisedDetector(num_classes=3, mode=mode, **settings)


def batch(
    gt_boxes: list[list[list[float]]] | None = None,
    gt_classes: list[list[int]] | None = None,
    original_size: tuple[int, int] = (SIDE, SIDE),
    proposals: list[list[list[float]]] = PROPOSALS,
) -> dict[str, Any]:
    """Two 64x64 images, each a bright rectangle (its box) on a dark background."""
    gt_boxes = [[[16, 16, 47, 47]], [[4, 30, 27, 60]]] if gt_boxes is None else gt_boxes
    gt_classes = [[1], [2]] if gt_classes is None else gt_classes
    images = torch.full((len(gt_boxes), 3, SIDE, SIDE), -1.0)
    for image, boxes in zip(images, gt_boxes, strict=True):
        for x1, y1, x2, y2 in boxes:
            image[:, int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = 1.0
    boxes = [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in gt_boxes]
    return {
        "image": images,
        "input_size": [(SIDE, SIDE)] * len(images),
        "original_size": [original_size] * len(images),
        "image_id": [f"{i:06d}" for i in range(len(images))],
        "gt_boxes": boxes,
        "gt_classes": [torch.tensor(c, dtype=torch.int64) for c in gt_classes],
        "gt_difficult": [torch.zeros(len(b), dtype=torch.bool) for b in boxes],
        "labels": torch.zeros(len(images), 3),
        "label_weights": torch.ones(len(images), 3),
        "proposals": [torch.tensor(p, dtype=torch.float32) for p in proposals[: len(images)]],
    }


def total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(losses.values())  # type: ignore[return-value]


@pytest.mark.parametrize("mode", MODES)
def test_losses_have_torchvision_names_and_are_finite(mode: str) -> None:
    torch.manual_seed(0)
    model = detector(mode)
    out = model.step(batch())
    assert set(out.losses) == BOX_LOSSES | (RPN_LOSSES if mode == "faster_rcnn" else set())
    assert all(bool(v.isfinite()) and v.ndim == 0 for v in out.losses.values())
    assert out.image_scores.shape == (2, 3)
    assert bool(((out.image_scores >= 0) & (out.image_scores <= 1)).all())
    assert out.detections is None
    total(out.losses).backward()
    assert model.roi_heads.box_predictor.cls_score.weight.grad is not None
    assert model.needs_proposals == (mode == "fast_rcnn")
    assert (model.loss_reduction, model.default_score_threshold) == ("mean", 0.05)


@pytest.mark.parametrize("mode", MODES)
def test_an_image_without_boxes_is_background(mode: str) -> None:
    torch.manual_seed(0)
    model = detector(mode)
    mixed = model.step(batch([[[16, 16, 47, 47]], []], [[1], []]))
    assert all(bool(v.isfinite()) for v in mixed.losses.values())
    total(mixed.losses).backward()
    empty = model.step(batch([[], []], [[], []]))
    assert all(bool(v.isfinite()) for v in empty.losses.values())
    # no foreground region: nothing to regress
    assert float(empty.losses["loss_box_reg"].detach()) == 0.0
    if mode == "faster_rcnn":
        assert float(empty.losses["loss_rpn_box_reg"].detach()) == 0.0


def test_difficult_boxes_are_no_targets_unless_asked() -> None:
    data = batch([[[16, 16, 47, 47], [0, 0, 9, 9]], [[4, 30, 27, 60]]], [[1, 0], [2]])
    data["gt_difficult"][0] = torch.tensor([False, True])
    targets = detector("fast_rcnn")._targets(data, torch.device("cpu"))
    assert targets[0]["boxes"].tolist() == [[16, 16, 48, 48]]  # continuous: +1 on x2, y2
    assert targets[0]["labels"].tolist() == [2]  # class 1 is label 2: 0 is the background
    kept = detector("fast_rcnn", train_on_difficult=True)._targets(data, torch.device("cpu"))
    assert kept[0]["labels"].tolist() == [2, 1]


def test_an_inverted_box_is_refused_naming_the_image() -> None:
    with pytest.raises(ValueError, match="image 000001 has a ground-truth box with x2 < x1"):
        detector("fast_rcnn").step(batch([[[16, 16, 47, 47]], [[30, 5, 20, 9]]]))


@pytest.mark.parametrize("mode", MODES)
def test_a_few_steps_on_one_batch_reduce_the_loss(mode: str) -> None:
    """Learning, not just running: the loss of the same batch, measured the same way (eval
    mode, the same sampling seed), falls well below where it started; Fast R-CNN then ranks
    each image's object first, with its class. Adam: the configs' SGD at 1e-3 is for
    pretrained weights, and barely moves a random AlexNet in 12 steps."""
    torch.manual_seed(0)
    model = detector(mode, dropout=0.0)
    data = batch()

    def measured() -> float:
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            value = float(total(model.step(data).losses))
        model.train()
        return value

    before = measured()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(12):
        optimizer.zero_grad()
        total(model.step(data).losses).backward()
        optimizer.step()
    after = measured()
    assert after < 0.6 * before, (before, after)  # about 0.4 (fast_rcnn), 0.45 (faster_rcnn)
    if mode == "fast_rcnn":
        with torch.no_grad():
            found = model.eval().predict(data).detections
        for detections, boxes, classes in zip(
            found, data["gt_boxes"], data["gt_classes"], strict=True
        ):
            assert int(detections.classes[0]) == int(classes[0])
            assert float(voc_iou(detections.boxes[0], boxes[0])) > 0.9


def zero_regression(model: SupervisedDetector) -> SupervisedDetector:
    """The model with its box deltas all 0: every region's box is the region itself."""
    with torch.no_grad():
        model.roi_heads.box_predictor.bbox_pred.weight.zero_()
        model.roi_heads.box_predictor.bbox_pred.bias.zero_()
    return model.eval()


def test_fast_rcnn_detections_are_its_proposals_without_regression() -> None:
    """With zero deltas, no score threshold and no suppression (NMS at IoU 1), Fast R-CNN's
    detections are exactly the given proposals, each once per class."""
    torch.manual_seed(0)
    model = zero_regression(detector("fast_rcnn", score_thresh=0.0, nms_thresh=1.0))
    with torch.no_grad():
        prediction = model.predict(batch())
    for found, proposals in zip(prediction.detections, PROPOSALS, strict=True):
        assert isinstance(found, Detections)
        assert len(found.boxes) == len(proposals) * 3
        assert sorted(set(map(tuple, found.boxes.tolist()))) == sorted(map(tuple, proposals))
        assert torch.equal(found.scores, found.scores.sort(descending=True).values)


def shifted_right(data: dict[str, Any], dx: int) -> dict[str, Any]:
    """``data``'s images moved ``dx`` pixels right on a wider canvas, with their boxes."""
    n, _, height, width = data["image"].shape
    images = torch.full((n, 3, height, width + dx), -1.0)
    images[..., dx:] = data["image"]
    move = torch.tensor([dx, 0, dx, 0])
    return {
        **data,
        "image": images,
        "input_size": [(height, width + dx)] * n,
        "original_size": [(height, width + dx)] * n,
        "gt_boxes": [b + move for b in data["gt_boxes"]],
        "proposals": [p + move for p in data["proposals"]],
    }


@pytest.mark.parametrize("mode", MODES)
def test_boxes_stay_float32_under_bf16_autocast(mode: str) -> None:
    """The gpu trainer's bf16-mixed: the losses are float32 and no box passes through bf16,
    whose 8-bit mantissa holds only even numbers from 256 to 512: the RPN's proposals are
    float32, and Fast R-CNN's unregressed detections of proposals moved 255 pixels right (odd
    x beyond 256) are still exactly those proposals."""
    torch.manual_seed(0)
    model = detector(mode, score_thresh=0.0, nms_thresh=1.0)
    data = shifted_right(batch(), 255)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.step(data)
        assert all(v.dtype == torch.float32 and bool(v.isfinite()) for v in out.losses.values())
        total(out.losses).backward()
        zero_regression(model)
        with torch.no_grad():
            images, sizes = model._images(data)
            proposals, _ = model._proposals(data, images, model._features(images), sizes, None)
            found = model.predict(data).detections
    assert all(p.dtype == torch.float32 for p in proposals)
    assert all(d.boxes.dtype == torch.float32 for d in found)
    if mode == "fast_rcnn":
        expected = sorted(map(tuple, data["proposals"][0].tolist()))
        assert any(x1 > 256 and x1 % 2 for x1, *_ in expected)  # not a bf16 number
        assert sorted(set(map(tuple, found[0].boxes.tolist()))) == expected


def test_predict_gives_boxes_in_pixels_of_the_image_on_disk() -> None:
    """Input 64x64 of an image stored 96 wide and 128 high: x scales by 1.5, y by 2. The
    proposal [14, 18, 45, 49] (inclusive, input pixels) spans [14, 46) x [18, 50), on disk
    [21, 69) x [36, 100): the inclusive box [21, 36, 68, 99]."""
    torch.manual_seed(0)
    model = zero_regression(detector("fast_rcnn", score_thresh=0.0, nms_thresh=1.0))
    with torch.no_grad():
        prediction = model.predict(batch(original_size=(128, 96)))
    boxes = prediction.detections[0].boxes
    assert [21.0, 36.0, 68.0, 99.0] in boxes.tolist()
    for found in prediction.detections:
        assert bool((found.boxes[:, :2] >= 0).all())
        assert bool((found.boxes[:, 2] <= 95).all()) and bool((found.boxes[:, 3] <= 127).all())
        assert bool((found.boxes[:, 2:] >= found.boxes[:, :2]).all())


@pytest.mark.parametrize("mode", MODES)
def test_image_scores_are_the_best_detection_of_each_class(mode: str) -> None:
    """predict's image score of a class is its best detection's score (0.05 threshold and
    NMS 0.3, the defaults, in between); detections are inside the image, best first."""
    torch.manual_seed(0)
    model = detector(mode, score_thresh=0.0).eval()
    with torch.no_grad():
        prediction = model.predict(batch(original_size=(128, 96)))
    assert prediction.image_scores.shape == (2, 3) and prediction.heatmaps is None
    for found, scores in zip(prediction.detections, prediction.image_scores, strict=True):
        assert len(found.boxes) > 0
        assert torch.equal(found.scores, found.scores.sort(descending=True).values)
        assert bool((found.boxes[:, :2] >= 0).all())
        assert bool((found.boxes[:, 2] <= 95).all()) and bool((found.boxes[:, 3] <= 127).all())
        for c in found.classes.unique().tolist():
            best = found.scores[found.classes == c].max()
            assert torch.allclose(best, scores[c])


@pytest.mark.parametrize("mode", MODES)
def test_validation_step_gives_losses_and_predicts_detections(mode: str) -> None:
    """In eval mode (Lightning's validation) step still gives the losses, and its detections
    and image scores are predict's."""
    torch.manual_seed(0)
    model = detector(mode).eval()
    data = batch()
    with torch.no_grad():
        out = model.step(data, detect=True)
        prediction = model.predict(data)
    assert set(out.losses) >= BOX_LOSSES
    assert all(bool(v.isfinite()) for v in out.losses.values())
    assert out.detections is not None and len(out.detections) == 2
    assert torch.allclose(out.image_scores, prediction.image_scores)
    for a, b in zip(out.detections, prediction.detections, strict=True):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.classes, b.classes)


def test_background_needs_an_overlap_of_bg_iou_low() -> None:
    """Fast R-CNN's BG_THRESH_LO: IoU >= 0.5 foreground, [0.1, 0.5) background, below 0.1 not
    sampled (-1); with no box in the image, every proposal is background."""
    heads: BoxHeads = detector("fast_rcnn", bg_iou_low=0.1).roi_heads
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # IoU with gt: 1, 0.25 (5x5 of 100), 0 (disjoint)
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 5.0], [20.0, 20, 30, 30]])
    _, labels = heads.assign_targets_to_proposals([proposals], [gt], [torch.tensor([3])])
    assert labels[0].tolist() == [3, 0, -1]
    _, labels = heads.assign_targets_to_proposals(
        [proposals], [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.int64)]
    )
    assert labels[0].tolist() == [0, 0, 0]


def test_anchors_are_laid_at_the_backbone_stride() -> None:
    """AlexNet maps a 64-pixel image to 3x3 cells of 16 pixels; torchvision's AnchorGenerator
    would space them 64 // 3 = 21 pixels apart."""
    generator = StrideAnchorGenerator((32,), (1.0,), stride=16)
    maps = [torch.zeros(1, 8, 3, 3)]
    anchors = generator(type("Images", (), {"image_sizes": [(64, 64)]})(), maps)[0]
    centres = ((anchors[:, 0] + anchors[:, 2]) / 2).unique().tolist()
    assert centres == [0.0, 16.0, 32.0]
    assert (anchors[:, 2] - anchors[:, 0]).unique().tolist() == [32.0]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"model\.net\.mode must be one of"):
        SupervisedDetector(3, mode="fast-rcnn", weights="none")
    with pytest.raises(ValueError, match="bg_iou_low"):
        SupervisedDetector(3, bg_iou_low=0.6, weights="none")
    with pytest.raises(ValueError, match="fc6 reads a 6x6 grid: set it to 6"):
        detector("fast_rcnn", roi_output_size=7)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
@pytest.mark.parametrize("mode", MODES)
def test_configs_build_the_family_through_the_training_module(mode: str, tmp_path) -> None:
    """conf/model/<mode>.yaml composes, WSLModule builds the family from it (VGG16, as the
    configs say), and one training step of the module (no trainer: logging is skipped) gives a
    loss its optimizer (SGD, biases at twice the rate without decay) trains on."""
    cfg = compose_cfg("train", [f"model={mode}", "model.net.weights=none"], tmp_path)
    module = hydra.utils.instantiate(cfg.model, class_names=["a", "b", "c"])
    assert isinstance(module.net, SupervisedDetector)
    assert module.needs_proposals == (mode == "fast_rcnn")
    assert module.default_score_threshold == 0.05
    assert isinstance(module.net.backbone[28], torch.nn.Conv2d)  # VGG16's conv5_3
    optimizer = module.configure_optimizers()["optimizer"]  # with its StepLR
    assert [g.get("lr", 1e-3) for g in optimizer.param_groups] == [1e-3, 2e-3]
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    torch.manual_seed(0)
    loss = module.training_step(batch(), 0)
    assert loss is not None and bool(loss.isfinite())
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        prediction = module.predict_batch(batch())
    assert len(prediction.detections) == 2
