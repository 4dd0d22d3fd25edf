"""WSDDN learns to detect from image labels on generated data; its test writes metrics, devkit
results files and the AP chart; detection, test-time augmentation and mixed precision work."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.support import compose_cfg
from wsl.data.datamodule import VOCProposalsDataModule
from wsl.data.generate import generate_voc
from wsl.evaluate import evaluate
from wsl.models.wsddn import WSDDNOutput
from wsl.structures.boxes import boxes_to_original, hflip_boxes
from wsl.train import train
from wsl.training.module import WSLModule

EPOCHS = 3


@pytest.fixture(scope="module")
def learning_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 trainval images of 128 px with 20 proposals each: a few CPU seconds an epoch."""
    root = tmp_path_factory.mktemp("wsddn_data")
    generate_voc(root, seed=1, num_trainval=96, num_test=16, proposals_per_image=20)
    return root


def overrides(root: Path, *extra: str) -> list[str]:
    """The demo on ``root``, tested on trainval (so CorLoc is reported), validated on test."""
    return [
        "experiment=wsddn_demo", f"data.root={root}", "data.num_workers=0",
        "data.test_split=trainval", "data.val_split=test", f"trainer.max_epochs={EPOCHS}",
        "trainer.enable_progress_bar=false", "logger=tensorboard", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(learning_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same network and images, untrained (test only) and after brief training."""
    untrained_dir = tmp_path_factory.mktemp("wsddn_untrained")
    trained_dir = tmp_path_factory.mktemp("wsddn_trained")
    untrained = train(compose_cfg("train", overrides(learning_root, "train=false"), untrained_dir))
    trained = train(compose_cfg("train", overrides(learning_root), trained_dir))
    return {"untrained": untrained, "trained": trained, "dir": trained_dir}


def test_training_beats_the_untrained_model_clearly(runs: dict[str, Any]) -> None:
    # Measured with seeds 42, 2, 3, 7: untrained det_mAP 0.04-0.06, CorLoc 0.14-0.22, cls_mAP
    # 0.29-0.35; trained det_mAP 0.27-0.45, CorLoc 0.44-0.56 (gain >= 0.27), cls_mAP 0.94-0.99.
    untrained, trained = runs["untrained"], runs["trained"]
    assert trained["det_mAP"] > max(untrained["det_mAP"] + 0.15, 2 * untrained["det_mAP"]), (
        untrained,
        trained,
    )
    assert trained["CorLoc"] > untrained["CorLoc"] + 0.2, (untrained, trained)
    assert trained["cls_mAP"] > untrained["cls_mAP"] + 0.4, (untrained, trained)


def read_devkit_file(path: Path) -> list[list[str]]:
    return [line.split(" ") for line in path.read_text().splitlines()]


def test_run_directory_holds_metrics_results_files_and_the_ap_chart(
    runs: dict[str, Any], learning_root: Path
) -> None:
    run_dir: Path = runs["dir"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["metrics"]["det_mAP"] == pytest.approx(runs["trained"]["det_mAP"])
    assert set(saved["per_class"]) == {"det_AP", "cls_AP", "CorLoc"}
    with (run_dir / "per_class.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [r["class"] for r in rows] == ["circle", "square", "triangle", "cross"]
    mean_ap = np.mean([float(r["det_AP"]) for r in rows])
    assert mean_ap == pytest.approx(runs["trained"]["det_mAP"])
    png = (run_dir / "class_ap.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    trainval = (learning_root / "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt").read_text().split()
    for name in ("circle", "square", "triangle", "cross"):
        lines = read_devkit_file(run_dir / f"comp4_det_trainval_{name}.txt")
        assert lines and {line[0] for line in lines} <= set(trainval)
        boxes = np.array([[float(v) for v in line[2:]] for line in lines])
        assert boxes.min() >= 1 and (boxes[:, 2:] >= boxes[:, :2]).all()  # 1-based
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_tensorboard_holds_losses_and_metrics(runs: dict[str, Any]) -> None:
    events = EventAccumulator(str(runs["dir"] / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss_step", "train/loss_epoch", "train/cls_mAP", "val/loss",
                "val/cls_mAP", "val/det_mAP", "test/det_mAP", "test/CorLoc"):  # fmt: skip
        assert tag in scalars, tag
    assert len(events.Scalars("val/det_mAP")) == EPOCHS
    losses = [e.value for e in events.Scalars("train/loss_epoch")]
    assert losses[-1] < losses[0]


def test_evaluate_writes_the_detections_it_scored(runs: dict[str, Any], tmp_path: Path) -> None:
    ckpt = runs["dir"] / "checkpoints" / "last.ckpt"
    cfg = compose_cfg(
        "evaluate", [f"ckpt_path={ckpt}", "data.split=trainval", "logger=none"], tmp_path
    )
    results = evaluate(cfg)
    for name, value in runs["trained"].items():
        assert results["metrics"][name] == pytest.approx(value, abs=1e-6, nan_ok=True), name
    image_ids, detections = results["detections"]
    image, (boxes, scores, classes) = image_ids[0], detections[0]
    best, score = int(scores.argmin()), float(scores.min())  # the smallest: many digits
    name = ["circle", "square", "triangle", "cross"][int(classes[best])]
    lines = read_devkit_file(tmp_path / f"comp4_det_trainval_{name}.txt")
    line = next(line for line in lines if line[0] == image and float(line[1]) == score)
    assert line[1] == repr(score)  # the float32 score, every digit
    assert [float(v) for v in line[2:]] == (boxes[best] + 1).tolist()
    total = sum(len(read_devkit_file(p)) for p in tmp_path.glob("comp4_det_trainval_*.txt"))
    assert total == sum(len(s) for s in (d[1] for d in detections))


@pytest.fixture(scope="module")
def batch_and_module(
    learning_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], WSLModule]:
    """A batch of 3 eval images (proposals included) and an untrained module whose heads are
    scaled up, so that its region scores clearly depend on the pixels."""
    cfg = compose_cfg("train", overrides(learning_root), tmp_path_factory.mktemp("batch"))
    datamodule: VOCProposalsDataModule = hydra.utils.instantiate(cfg.data, batch_size=3)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg.model, class_names=datamodule.class_names)
    with torch.no_grad():
        module.net.fc8c.weight.mul_(100)
        module.net.fc8d.weight.mul_(100)
    return batch, module


def test_detect_gives_top_k_boxes_of_the_image_on_disk_and_keeps_the_mode(
    batch_and_module: tuple[dict[str, Any], WSLModule],
) -> None:
    batch, module = batch_and_module
    module.train()
    detections = module.detect(batch)
    assert module.training
    assert len(detections) == 3
    for i, (boxes, scores, classes) in enumerate(detections):
        on_disk = boxes_to_original(
            batch["proposals"][i], batch["input_size"][i], batch["original_size"][i]
        )
        assert 0 < len(boxes) <= module.net.detection_config.top_k
        assert (boxes[:, None] == on_disk[None]).all(dim=2).any(dim=1).all()
        assert (scores[1:] <= scores[:-1]).all() and (classes < 4).all()
        height, width = batch["original_size"][i]
        assert boxes[:, 2].max() < width and boxes[:, 3].max() < height
    assert torch.equal(module.detect(batch)[0][1], detections[0][1])  # dropout is off


def test_tta_averages_the_scores_of_each_proposal_over_views(
    batch_and_module: tuple[dict[str, Any], WSLModule],
) -> None:
    batch, module = batch_and_module
    module.eval()
    images, proposals = batch["image"], batch["proposals"]
    with torch.no_grad():
        plain = module.net(images, proposals).region_scores
        flipped_images = torch.zeros_like(images)
        flipped = []
        for i, (height, width) in enumerate(batch["input_size"]):
            flipped_images[i, :, :height, :width] = images[i, :, :height, :width].flip(-1)
            flipped.append(hflip_boxes(proposals[i], width))
        mirrored = module.net(flipped_images, flipped).region_scores
        expected = ((plain + mirrored) / 2).split([len(p) for p in proposals])
        net = module.net
        net.tta = type(net.tta)(flip=True)
        try:
            averaged, boxes = net.view_scores(batch)[0]["model"]
            assert not torch.allclose(plain, mirrored, rtol=0.01)  # the flip changes the scores
            for got, want in zip(averaged, expected, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
            for got, p, size, original in zip(
                boxes, proposals, batch["input_size"], batch["original_size"], strict=True
            ):  # the views' boxes, mapped back to the image on disk, are the proposals'
                torch.testing.assert_close(got, boxes_to_original(p, size, original))
            eval_scale = min(batch["input_size"][0])  # not what the batch holds: views resized
            net.tta = type(net.tta)(scales=[eval_scale * 2])
            rescaled = torch.cat(net.view_scores(batch)[0]["model"][0])
            assert not torch.allclose(rescaled, plain, rtol=0.01)
        finally:
            net.tta = type(net.tta)()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_step_under_bf16_autocast_gives_a_float32_loss(
    learning_root: Path, tmp_path: Path
) -> None:
    # On the CPU, torchvision's roi_pool has no autocast rule (roi_align has; on CUDA both).
    extra = ("model.net.roi_op=align", "model.net.spatial_reg_weight=1.0")
    cfg = compose_cfg("train", overrides(learning_root, *extra), tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data, batch_size=2)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    module: WSLModule = hydra.utils.instantiate(cfg.model, class_names=datamodule.class_names)
    module.net.dropout.p = 0.0
    full = module.training_step(batch, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output: WSDDNOutput = module.net.forward_batch(batch)
        loss = module.training_step(batch, 0)
    assert output.features.dtype == torch.bfloat16  # autocast is on (heads: float32) ...
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())  # ... not for the loss
    assert loss.item() == pytest.approx(full.item(), rel=0.05)
    loss.backward()
    assert module.net.fc8d.weight.grad is not None


@pytest.mark.parametrize(
    ("experiment", "backbone", "train_scales", "tta_scales", "epochs"),
    [
        ("wsddn", "alexnet", [600], [], 5),
        ("wsddn_paper", "alexnet", [480, 576, 688, 864, 1200], [480, 576, 688, 864, 1200], 20),
        ("wsddn_vgg16", "vgg16", [480, 576, 688, 864, 1200], [480, 576, 688, 864, 1200], 20),
    ],
)
def test_voc_experiments_compose_the_published_setups(
    experiment: str,
    backbone: str,
    train_scales: list[int],
    tta_scales: list[int],
    epochs: int,
    tmp_path: Path,
) -> None:
    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    assert cfg.data._target_.endswith("VOCProposalsDataModule") and cfg.data.root.endswith("voc")
    assert cfg.model.net.backbone == backbone and cfg.model.net.weights == "imagenet"
    assert list(cfg.data.train_transform.scales) == train_scales and cfg.data.train_transform.flip
    net = cfg.model.net
    assert list(net.tta.scales) == tta_scales and cfg.trainer.max_epochs == epochs
    assert net.inference.nms_iou == 0.4 and net.mil_class_reduction == "sum"
    assert dict(cfg.model.optimizer) == {
        "_target_": "torch.optim.SGD", "lr": 1e-5, "momentum": 0.9, "weight_decay": 5e-4,
    }  # fmt: skip
    if experiment != "wsddn":
        assert cfg.model.scheduler.step_size == 10 and net.spatial_reg_weight == 1e-4
        assert net.tta.flip and cfg.data.eval_transform.scales == [1200]
