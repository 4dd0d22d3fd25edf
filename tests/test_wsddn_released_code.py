"""WSDDN as the authors' released code runs it (github.com/hbilen/WSDDN): ROI offsets, region
softmax temperature, the spatial regulariser's gradient, no weight decay on biases, the test's
score threshold, all-point AP, float32 heads under bf16, and a diverged run's NaN loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from tests.support import BOXES, CLASS0, FEATURES, SCORES, compose_cfg, random_boxes
from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.inference.regions import DetectionConfig, region_detections
from wsl.models.backbones import build_backbone
from wsl.models.roi import pool_regions, receptive_field_centre
from wsl.models.wsddn import WSDDN, spatial_regulariser
from wsl.train import train
from wsl.training.module import WSLModule

CLASSES = ["a", "b", "c"]


# --- ROI pooling with the receptive-field offsets of getBatch (wsddn_train.m) ---


@pytest.mark.parametrize(("backbone", "centre"), [("alexnet", 15.0), ("vgg16", 7.5)])
def test_receptive_field_centre_of_cell_0(backbone: str, centre: float) -> None:
    # AlexNet: conv1 (11, stride 4, pad 2) centres cell 0 on pixel 3, pool1 (3, 2) on 3 + 4,
    # pool2 (3, 2) on 7 + 8 = 15; padded 3x3 convs keep it. VGG16: each 2x2 pool adds half its
    # input step: 0.5 + 1 + 2 + 4 = 7.5, the released code's o0 = 8.5 (1-based).
    with torch.device("meta"):
        features = build_backbone(backbone, "none").features
    assert receptive_field_centre(features) == centre


def coordinate_maps(size: int) -> Tensor:
    """(1, 4, size, size) maps holding x, -x, y, -y of each cell: max-pooling a region to one
    value gives its last column, minus its first column, its last row, minus its first row."""
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.stack([x, -x, y, -y])[None]


def pooled_cells(boxes: Tensor, centre: float | None) -> Tensor:
    """Each box's first and last feature cell ``[x1, y1, x2, y2]`` as the pooling reads them."""
    maps = coordinate_maps(20)
    pooled = pool_regions(maps, boxes, torch.zeros(len(boxes), dtype=torch.long), 1, 16, "pool",
                          centre)[:, :, 0, 0]  # fmt: skip
    return torch.stack([-pooled[:, 1], -pooled[:, 3], pooled[:, 0], pooled[:, 2]], dim=1)


def test_roi_offsets_map_boxes_to_the_cells_of_the_released_code() -> None:
    # AlexNet (centre 15): x1 = floor((x1 - 15 + 9.5) / 16 + 0.5), x2 = ceil((x2 - 15 - 9.5) / 16
    # - 0.5). [0, 0, 159, 159]: floor(0.156) = 0, ceil(7.906) = 8. [40, 100, 200, 130]: x1
    # floor(2.656) = 2, y1 floor(6.406) = 6, x2 ceil(10.469) = 11, y2 ceil(6.094) = 7.
    # [100, 100, 110, 110]: first cell 6, last 5 < 6: one cell wide, as ROIPooling's max(.., 1).
    boxes = torch.tensor([[0, 0, 159, 159], [40, 100, 200, 130], [100, 100, 110, 110]]).float()
    expected = torch.tensor([[0, 0, 8, 8], [2, 6, 11, 7], [6, 6, 6, 6]]).float()
    assert torch.equal(pooled_cells(boxes, 15.0), expected)
    # Without offsets (Fast R-CNN): round(x / 16) at both ends: [0, 0, 10, 10], [3, 6, 13, 8].
    plain = torch.tensor([[0, 0, 10, 10], [3, 6, 13, 8], [6, 6, 7, 7]]).float()
    assert torch.equal(pooled_cells(boxes, None), plain)


@pytest.mark.parametrize("o0", [16.0, 8.5])  # 1-based centres: torchvision AlexNet, VGG16
def test_roi_offsets_equal_the_1_based_formula_of_get_batch(o0: float) -> None:
    boxes = random_boxes(200, 300, torch.Generator().manual_seed(0))
    one_based = boxes + 1  # the code's pixels
    first = ((one_based[:, :2] - o0 + 9.5) / 16 + 0.5).floor() + 1  # wsddn_train.m, getBatch
    last = ((one_based[:, 2:] - o0 - 9.5) / 16 - 0.5).ceil() + 1
    last = torch.maximum(last, first)  # ROIPooling: a region is at least one cell wide
    expected = torch.cat([first, last], dim=1) - 1  # 1-based cells -> 0-based
    assert torch.equal(pooled_cells(boxes, o0 - 1), expected)


def test_roi_offsets_need_max_pooling() -> None:
    assert WSDDN(3, weights="none", roi_offsets=True).roi_centre == 15.0
    assert WSDDN(3, weights="none").roi_centre is None
    with pytest.raises(ValueError, match=r"roi_offsets=true .* needs roi_op='pool'"):
        WSDDN(3, weights="none", roi_op="align", roi_offsets=True)


# --- the region softmax's temperature (SoftMax2.m: input / temp) ---


def test_detection_temperature_divides_the_region_logits() -> None:
    torch.manual_seed(0)
    model = WSDDN(3, weights="none", detection_temperature=2.0).eval()
    images = torch.randn(1, 3, 96, 96)
    proposals = [random_boxes(6, 96, torch.Generator().manual_seed(1))]
    out = model(images, proposals)
    logits = model.fc8d(out.features)
    assert torch.allclose(out.detection, (logits / 2).softmax(dim=0), atol=1e-6)
    assert torch.allclose(out.classification, model.fc8c(out.features).softmax(dim=1), atol=1e-6)


# --- the spatial regulariser's gradient (LossTopBoxSmoothProb.m, backward) ---


def test_spatial_regulariser_has_the_released_codes_value_and_gradient() -> None:
    # Class 0 (see tests/test_wsddn_model.py): region 0 tops, regions 1 (score 0.3) and 3 (0.1)
    # are near it. The code's backward: s_r (f_r - f_t) for r, minus their sum for t:
    # f1: 0.3 ([0, 1] - [1, 0]) = [-0.3, 0.3]; f3: 0.1 ([1, 2] - [1, 0]) = [0, 0.2];
    # f0: [0.3, -0.5]. Its forward value has s_r^2 (CLASS0 = 0.11).
    features = FEATURES.clone().requires_grad_()
    image = torch.zeros(5, dtype=torch.long)
    value = spatial_regulariser(features, SCORES, BOXES, image, torch.tensor([[1, 0]]))
    value.backward()
    assert value.item() == pytest.approx(CLASS0, rel=1e-6)
    expected = torch.tensor([[0.3, -0.5], [-0.3, 0.3], [0, 0], [0, 0.2], [0, 0]])
    assert torch.allclose(features.grad, expected, atol=1e-6)


# --- no weight decay on biases (wsddn_init.m) ---


def module(**kwargs) -> WSLModule:
    torch.manual_seed(0)
    optimizer = {"_target_": "torch.optim.SGD", "lr": 0.1, "weight_decay": 0.5}
    net = {"_target_": "wsl.models.wsddn.WSDDN", "weights": "none"}
    return WSLModule(CLASSES, net=net, optimizer=optimizer, **kwargs)


def test_biases_are_not_decayed_when_asked() -> None:
    wsddn = module(bias_weight_decay=False)
    optimizer = wsddn.configure_optimizers()
    weights, biases = optimizer.param_groups
    names = {id(p): n for n, p in wsddn.named_parameters()}
    assert {names[id(p)] for p in biases["params"]} == {
        n for n, p in wsddn.named_parameters() if n.endswith(".bias") and p.requires_grad
    }
    assert biases["weight_decay"] == 0.0 and weights["weight_decay"] == 0.5
    assert "net.features.0.bias" not in {names[id(p)] for p in biases["params"]}  # frozen conv1
    # One SGD step with zero gradients: weights shrink by lr * decay = 5 %, biases stay.
    fc6_weight, fc6_bias = wsddn.net.fc6.weight.detach().clone(), wsddn.net.fc6.bias.detach()
    fc6_bias = fc6_bias.clone()
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.allclose(wsddn.net.fc6.weight, 0.95 * fc6_weight)
    assert torch.equal(wsddn.net.fc6.bias, fc6_bias)


def test_by_default_every_parameter_is_decayed() -> None:
    optimizer = module().configure_optimizers()
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["weight_decay"] == 0.5


# --- the test's score threshold (wsddn_test.m: scTh 1e-3 on the sum over the views) ---


def test_score_threshold_on_the_sum_over_views() -> None:
    boxes = torch.tensor([[0, 0, 9, 9], [50, 50, 59, 59], [100, 100, 109, 109]]).float()
    scores = torch.tensor([[2e-4], [5e-5], [1.5e-4]])  # averages over 10 views
    mean = DetectionConfig(score_threshold=1e-3, top_k=None)
    assert len(region_detections(boxes, scores, mean, num_views=10)[0]) == 0
    summed = DetectionConfig(score_threshold=1e-3, score_threshold_on="sum", top_k=None)
    kept, kept_scores, _ = region_detections(boxes, scores, summed, num_views=10)
    assert torch.equal(kept, boxes[[0, 2]])  # sums 2e-3 and 1.5e-3 > 1e-3; 5e-4 is not
    assert torch.equal(kept_scores, scores[[0, 2], 0])  # scores stay the averages
    with pytest.raises(ValueError, match="score_threshold_on='total' is not valid"):
        DetectionConfig(score_threshold_on="total")


# --- all-point AP beside 11-point AP (wsddnVOCap.m) ---


def test_evaluator_reports_11_point_and_all_point_ap() -> None:
    # Two GT, detections TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall 1/2,
    # 1/2, 1. 11-point: (6 x 1 + 5 x 2/3) / 11 = 0.8485; all-point: 1/2 x 1 + 1/2 x 2/3 = 0.8333.
    evaluator = VOCDetectionEvaluator(["a"])
    gt = (np.array([[0, 0, 9, 9], [50, 50, 59, 59]]), np.zeros(2), np.zeros(2, dtype=bool))
    found = (np.array([[0, 0, 9, 9], [20, 20, 29, 29], [50, 50, 59, 59]]),
             np.array([0.9, 0.8, 0.7]), np.zeros(3))  # fmt: skip
    evaluator.process(["000001"], [found], [gt])
    result = evaluator.evaluate()
    assert result["mAP"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert result["mAP_allpoint"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert result["ap_per_class_allpoint"]["a"] == result["mAP_allpoint"]


# --- bf16: fc8 and the softmaxes in float32 ---


def test_bf16_region_scores_are_float32_and_close_to_fp32() -> None:
    # CPU autocast has no rule for torchvision's roi_pool; roi_align has one (as both on CUDA).
    torch.manual_seed(0)
    model = WSDDN(3, weights="none", roi_op="align").eval()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 128, 128, generator=g)
    proposals = [random_boxes(40, 128, g), random_boxes(30, 128, g)]
    full = model(images, proposals)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(images, proposals)
    assert half.features.dtype == torch.bfloat16  # the backbone and fc6/fc7 ran in bf16 ...
    for name in ("classification", "detection", "region_scores", "image_scores"):
        assert getattr(half, name).dtype == torch.float32, name  # ... the heads did not
    # Stated tolerance: 0.1 % of the largest region score, and image scores within 0.1 %.
    # Measured: 0.006 % and 0.0006 %; with fc8 and the softmaxes in bf16: 0.85 % and 0.75 %.
    scale = full.region_scores.max()
    assert (half.region_scores - full.region_scores).abs().max() <= 1e-3 * scale
    assert torch.allclose(half.image_scores, full.image_scores, rtol=1e-3, atol=0)


# --- a diverged run: NaN scores are a skipped, counted step, not BCE's error ---


def test_nan_image_scores_give_a_skipped_counted_step() -> None:
    wsddn = module(max_nonfinite_steps=3)
    g = torch.Generator().manual_seed(3)
    batch = {
        "image": torch.randn(2, 3, 96, 96, generator=g),
        "proposals": [random_boxes(5, 96, g), random_boxes(4, 96, g)],
        "labels": torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]]),
        "label_weights": torch.ones(2, 3),
        "image_id": ["a", "b"],
    }
    assert wsddn.training_step(batch, 0) is not None
    with torch.no_grad():
        wsddn.net.fc8d.weight.fill_(math.inf)  # inf logits: NaN region softmax
    assert wsddn.training_step(batch, 1) is None
    assert wsddn.loss_guard.skipped == 1


def test_a_diverging_run_stops_clearly_after_counted_skips(
    generated_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # lr 1e6 (issue 10, item 8): the weights blow up within a few steps; every later step is
    # skipped and counted, and after max_nonfinite_steps in a row the run stops with the
    # guard's message (before: "all elements of input should be between 0 and 1" from BCE).
    overrides = [
        "experiment=wsddn_demo", f"data.root={generated_root}", "debug=fast",
        "data.batch_size=2", "model.optimizer.lr=1e6", "model.max_nonfinite_steps=3",
        "model.val_detection=false", "+trainer.limit_val_batches=0",
    ]  # fmt: skip
    with pytest.raises(FloatingPointError, match="not finite for 3 steps in a row"):
        train(compose_cfg("train", overrides, tmp_path))
    skipped = [r.message for r in caplog.records if "step skipped" in r.message]
    assert [m.split("(")[1] for m in skipped] == [
        "1 in a row, 1 in all)",
        "2 in a row, 2 in all)",
        "3 in a row, 3 in all)",
    ]


# --- the paper configs ---


@pytest.mark.parametrize("experiment", ["wsddn_paper", "wsddn_vgg16"])
def test_paper_configs_use_the_released_codes_settings(experiment: str, tmp_path: Path) -> None:
    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    net, model = cfg.model.net, cfg.model
    assert net.detection_temperature == 2.0 and net.roi_offsets and not net.freeze_conv1
    assert not model.bias_weight_decay and model.all_point_ap
    assert dict(model.net.inference) == {
        "score_threshold": 1e-3, "score_threshold_on": "sum", "nms_iou": 0.4, "top_k": None,
    }  # fmt: skip
    assert cfg.data.difficult_labels == "ignore"


def test_the_course_config_keeps_its_settings(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["experiment=wsddn"], tmp_path)
    assert cfg.model.net.detection_temperature == 1.0 and not cfg.model.net.roi_offsets
    assert cfg.model.bias_weight_decay and not cfg.model.all_point_ap
    assert cfg.model.net.inference.top_k == 100 and cfg.data.difficult_labels == "positive"


def test_all_point_map_reaches_metrics_json(generated_root: Path, tmp_path: Path) -> None:
    overrides = [
        "experiment=wsddn_demo", f"data.root={generated_root}", "debug=fast", "train=false",
        "model.all_point_ap=true",
    ]  # fmt: skip
    metrics = train(compose_cfg("train", overrides, tmp_path))
    written = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert written["det_mAP_allpoint"] == pytest.approx(metrics["det_mAP_allpoint"])
    assert 0 <= written["det_mAP_allpoint"] <= 1
    assert written["det_mAP"] != written["det_mAP_allpoint"]
