"""``python -m wsl.bench``: its baselines compute what the project computes, and its report
derives every ratio from the measurements it holds (no timing is asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wsl.benchmarks.data_loader import LoaderResult, measure_data_loader, proposals_datamodule
from wsl.benchmarks.evaluation import EvaluationResult, measure_evaluation
from wsl.benchmarks.report import build_report
from wsl.benchmarks.suite import SIZES, train_setups
from wsl.benchmarks.tables import format_report
from wsl.benchmarks.training import (
    TrainResult,
    TrainSetup,
    TrainWork,
    build_model,
    measure_training,
    plain_forward,
    plain_inputs,
    synthetic_images,
)
from wsl.models.supervised import SupervisedDetector
from wsl.models.wsddn import WSDDN

ROOT = Path(__file__).resolve().parents[1]


def test_plain_forward_scores_like_wsddn() -> None:
    work = TrainWork(device="cpu", scale=96, proposals=12, images=2, timed_passes=1, num_classes=5)
    torch.manual_seed(0)
    model = WSDDN(5, weights="none").eval()
    for image, x in zip(synthetic_images(work), plain_inputs(synthetic_images(work)), strict=True):
        assert torch.equal(x["rois"][:, 1:], image.proposals) and not x["rois"][:, 0].any()
        with torch.no_grad():
            expected = model(image.image[None], [image.proposals]).image_scores
            torch.testing.assert_close(plain_forward(model, x["image"], x["rois"]), expected)


def test_synthetic_proposals_are_valid_boxes_inside_their_image() -> None:
    work = TrainWork(device="cpu", scale=100, proposals=50, images=6, timed_passes=1)
    for image in synthetic_images(work):
        height, width = image.image.shape[1:]
        boxes = image.proposals
        assert 40 <= len(boxes) <= 50 and sorted([height, width]) == [100, 133]
        assert (boxes >= 0).all() and (boxes[:, 2] <= width - 1).all()
        assert (boxes[:, 3] <= height - 1).all()
        assert (boxes[:, 2:] - boxes[:, :2] + 1 >= 20 - 1e-3).all()
        assert 1 <= image.labels.sum() <= 3


def test_evaluation_benchmark_agrees_with_the_plain_loop() -> None:
    result = measure_evaluation(num_images=60, num_classes=6, detections_per_image=20, subset=30)
    assert result.detections == 1200 and result.subset_images == 30
    assert result.max_abs_ap_difference == 0.0
    assert result.plain_seconds_extrapolated == pytest.approx(2 * result.plain_subset_seconds)


def test_data_loader_benchmark_counts_every_image(generated_root: Path) -> None:
    datamodule = proposals_datamodule(
        generated_root, batch_size=4, scale=96, proposals=50, num_workers=0
    )
    result = measure_data_loader(datamodule, timed_epochs=1)
    assert (result.images, result.batch_size, result.num_workers) == (24, 4, 0)
    assert result.images_per_s > 0


def fake_report(plain_peak: int | None = 1000 * 2**20) -> dict:
    """A report from made-up measurements with round numbers."""
    setups = [
        TrainSetup("plain b=1 fp32", plain=True),
        TrainSetup("wsl b=8 fp32", plain=False, batch_size=8),
        TrainSetup("wsl b=8 bf16", plain=False, batch_size=8, bf16=True),
        TrainSetup("oicr b=8 bf16", plain=False, batch_size=8, bf16=True, refinement="oicr"),
        TrainSetup("wsl vgg16 s16 b=8 bf16", plain=False, batch_size=8, bf16=True,
                   backbone="vgg16"),
        TrainSetup("wsl vgg16 s8 b=8 bf16", plain=False, batch_size=8, bf16=True,
                   backbone="vgg16_dilated", freeze_blocks=2),
    ]  # fmt: skip
    training = [
        TrainResult(setups[0], 10.0, [9.0, 11.0], plain_peak),
        TrainResult(setups[1], 25.0, [25.0, 25.0], 3000 * 2**20),
        TrainResult(setups[2], 40.0, [40.0, 40.0], 2000 * 2**20),
        TrainResult(setups[3], 36.0, [36.0, 36.0], 2500 * 2**20),
        TrainResult(setups[4], 12.0, [12.0, 12.0], 5000 * 2**20),
        TrainResult(setups[5], 6.0, [6.0, 6.0], 8000 * 2**20),
    ]
    loader = LoaderResult(images_per_s=60.0, images=64, batch_size=8, num_workers=2)
    return build_report(
        "cuda", "cuda (a GPU)", False, SIZES["cuda"], training, loader, fake_evaluation()
    )


def fake_evaluation() -> EvaluationResult:
    """Made-up evaluation timings with round numbers."""
    return EvaluationResult(
        images=5000,
        detections=1_500_000,
        wsl_seconds=1.25,
        subset_images=500,
        wsl_subset_seconds=0.1,
        plain_subset_seconds=4.0,
        max_abs_ap_difference=0.0,
    )


def test_report_ratios_come_from_the_measurements() -> None:
    report = json.loads(json.dumps(fake_report()))  # plain JSON values only
    assert [row["speedup"] for row in report["training"]] == [1.0, 2.5, 4.0, 3.6, 1.2, 0.6]
    assert [row["memory_ratio"] for row in report["training"]] == [1.0, 3.0, 2.0, 2.5, 5.0, 8.0]
    # OICR's step against WSDDN's (the last AlexNet row without refinement): 36 / 40
    assert [row["vs_wsddn"] for row in report["training"]] == [None, None, None, 0.9, None, None]
    # VGG16 at stride 8 against stride 16: 6 / 12
    assert [row["vs_stride_16"] for row in report["training"]] == [None] * 5 + [0.5]
    loader = report["data_loader"]
    assert loader["training_setup"] == "wsl b=8 bf16"  # the project's WSDDN step, not VGG16's
    assert (loader["ratio"], loader["keeps_up"]) == (1.5, True)
    evaluation = report["evaluation"]
    assert evaluation["plain_seconds_extrapolated"] == 40.0  # 4 s on 500 images, x10
    assert evaluation["speedup"] == 32.0 and evaluation["subset_speedup"] == 40.0
    assert evaluation["meets_target"] is True

    table = format_report(report)
    for expected in ("wsl b=8 bf16", "40.00", "2,000 MiB", "4.00x", "1.50x: keeps up", "32.00x",
                     "oicr b=8 bf16", "0.90x", "vs WSDDN step", "wsl vgg16 s8 b=8 bf16",
                     "8,000 MiB", "0.50x", "vs stride 16"):  # fmt: skip
        assert expected in table


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_vgg16_rows_time_stride_16_and_the_authors_stride_8_body(device: str) -> None:
    *_, stride_16, stride_8 = train_setups(device, batch_size=4)
    assert (stride_16.backbone, stride_16.freeze_blocks) == ("vgg16", 0)
    assert (stride_8.backbone, stride_8.freeze_blocks) == ("vgg16_dilated", 2)
    assert stride_8.batch_size == 4 and stride_8.bf16 == (device == "cuda")
    assert stride_8.refinement is None and not stride_8.plain


def test_the_training_benchmark_runs_the_stride_8_vgg16_step_on_a_cpu() -> None:
    work = TrainWork(device="cpu", scale=48, proposals=4, images=2, timed_passes=1, num_classes=3)
    setup = TrainSetup("s8", plain=False, batch_size=2, backbone="vgg16_dilated", freeze_blocks=2)
    result = measure_training(setup, work)
    assert result.images_per_s > 0 and len(result.pass_images_per_s) == 1


@pytest.mark.parametrize("mode", ["fast_rcnn", "faster_rcnn"])
def test_the_training_benchmark_runs_the_supervised_detectors_step(mode: str) -> None:
    work = TrainWork(device="cpu", scale=64, proposals=8, images=2, timed_passes=1, num_classes=3)
    setup = TrainSetup(mode, plain=False, batch_size=2, detector=mode)
    model = build_model(setup, work.num_classes)
    assert isinstance(model, SupervisedDetector) and model.mode == mode
    result = measure_training(setup, work)
    assert result.images_per_s > 0 and len(result.pass_images_per_s) == 1


def test_the_detector_rows_follow_the_refinement_rows() -> None:
    setups = train_setups("cpu", batch_size=4)
    assert [s.detector for s in setups[5:7]] == ["fast_rcnn", "faster_rcnn"]
    assert all(s.detector is None for s in setups[:5] + setups[7:])


def test_a_detector_row_is_compared_with_the_wsddn_step_not_taken_for_it() -> None:
    wsddn = TrainSetup("wsl b=8 bf16", plain=False, batch_size=8, bf16=True)
    detector = TrainSetup("fast_rcnn b=8 bf16", plain=False, batch_size=8, bf16=True,
                          detector="fast_rcnn")  # fmt: skip
    training = [
        TrainResult(TrainSetup("plain b=1 fp32", plain=True), 10.0, [10.0], None),
        TrainResult(wsddn, 40.0, [40.0], None),
        TrainResult(detector, 30.0, [30.0], None),  # the last AlexNet row without refinement
    ]
    loader = LoaderResult(images_per_s=60.0, images=64, batch_size=8, num_workers=2)
    report = build_report("cuda", "cuda", False, SIZES["cuda"], training, loader,
                          fake_evaluation())  # fmt: skip
    assert [row["vs_wsddn"] for row in report["training"]] == [None, None, 0.75]
    assert report["data_loader"]["training_setup"] == "wsl b=8 bf16"


def test_unknown_peak_memory_gives_no_ratio() -> None:
    report = fake_report(plain_peak=None)
    assert [row["memory_ratio"] for row in report["training"]] == [None] * 6
    assert "n/a" in format_report(report)


@pytest.mark.slow
def test_quick_run_prints_the_tables_and_writes_the_json(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "wsl.bench", "--quick", "--device", "cpu", "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    report = json.loads(path.read_text())
    assert report["quick"] is True and report["device"] == "cpu"
    plain, project, oicr, pcl, mist, fast_rcnn, faster_rcnn, stride_16, stride_8 = report[
        "training"
    ]
    assert (plain["name"], project["name"]) == ("plain b=1 fp32", "wsl b=2 fp32")
    assert (oicr["name"], pcl["name"], mist["name"]) == (
        "oicr b=2 fp32", "pcl b=2 fp32", "mist b=2 fp32",
    )  # fmt: skip
    assert (stride_16["name"], stride_8["name"]) == (
        "wsl vgg16 s16 b=2 fp32",
        "wsl vgg16 s8 b=2 fp32",
    )
    assert stride_8["vs_stride_16"] == pytest.approx(
        stride_8["images_per_s"] / stride_16["images_per_s"]
    )
    assert oicr["vs_wsddn"] == pytest.approx(oicr["images_per_s"] / project["images_per_s"])
    assert mist["vs_wsddn"] == pytest.approx(mist["images_per_s"] / project["images_per_s"])
    assert (fast_rcnn["name"], faster_rcnn["name"]) == (
        "fast_rcnn b=2 fp32",
        "faster_rcnn b=2 fp32",
    )
    assert faster_rcnn["vs_wsddn"] == pytest.approx(
        faster_rcnn["images_per_s"] / project["images_per_s"]
    )
    assert project["speedup"] == pytest.approx(project["images_per_s"] / plain["images_per_s"])
    assert project["memory_ratio"] == pytest.approx(
        project["peak_memory_bytes"] / plain["peak_memory_bytes"]
    )
    loader = report["data_loader"]
    assert loader["ratio"] == pytest.approx(loader["images_per_s"] / project["images_per_s"])
    evaluation = report["evaluation"]
    assert evaluation["max_abs_ap_difference"] == 0.0
    assert math.isfinite(evaluation["speedup"])
    assert "Training step" in done.stdout and "Evaluation" in done.stdout
