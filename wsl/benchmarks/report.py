"""The benchmark report: every measurement of ``python -m wsl.bench`` and the ratios derived
from them (the rows of its tables and of its JSON file)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from wsl.benchmarks.data_loader import LoaderResult
from wsl.benchmarks.evaluation import EvaluationResult
from wsl.benchmarks.suite import Sizes
from wsl.benchmarks.training import TrainResult

EVAL_TARGET_SECONDS = 2.0  # voc_detection_ap on the full set, on a 2-core CPU


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def build_report(
    device: str,
    device_name: str,
    quick: bool,
    sizes: Sizes,
    training: Sequence[TrainResult],
    loader: LoaderResult,
    evaluation: EvaluationResult,
) -> dict[str, Any]:
    """Every measurement and the ratios derived from them, as plain JSON-able values
    (``device``: "cpu" or "cuda"; ``device_name``: what :func:`wsl.bench.describe_device` says).

    Training ratios are against the first (plain) row, and for OICR, PCL, MIST and the
    supervised detectors also against the project's WSDDN step (the last AlexNet WSDDN row
    without refinement), which the loader is compared with; the VGG16 stride-8 row is also
    compared with the stride-16 one (``vs_stride_16``).
    """
    plain = training[0]
    project = next(
        r
        for r in reversed(training)
        if r.setup.refinement is None and r.setup.detector is None and r.setup.backbone == "alexnet"
    )
    stride_16 = next((r for r in training if r.setup.backbone == "vgg16"), None)
    loader_ratio = loader.images_per_s / project.images_per_s
    plain_total = evaluation.plain_seconds_extrapolated
    return {
        "device": device,
        "device_name": device_name,
        "quick": quick,
        "sizes": asdict(sizes),
        "training": [
            {
                **asdict(result.setup),
                "images_per_s": result.images_per_s,
                "pass_images_per_s": result.pass_images_per_s,
                "peak_memory_bytes": result.peak_memory_bytes,
                "speedup": result.images_per_s / plain.images_per_s,
                "memory_ratio": _ratio(result.peak_memory_bytes, plain.peak_memory_bytes),
                "vs_wsddn": (
                    result.images_per_s / project.images_per_s
                    if result.setup.refinement or result.setup.detector
                    else None
                ),
                "vs_stride_16": (
                    _ratio(result.images_per_s, stride_16.images_per_s)
                    if stride_16 is not None and result.setup.backbone == "vgg16_dilated"
                    else None
                ),
            }
            for result in training
        ],
        "data_loader": {
            **asdict(loader),
            "training_setup": project.setup.name,
            "training_images_per_s": project.images_per_s,
            "ratio": loader_ratio,
            "keeps_up": loader_ratio > 1,
        },
        "evaluation": {
            **asdict(evaluation),
            "plain_seconds_extrapolated": plain_total,
            "speedup": plain_total / evaluation.wsl_seconds,
            "subset_speedup": evaluation.plain_subset_seconds / evaluation.wsl_subset_seconds,
            "target_seconds": EVAL_TARGET_SECONDS,
            "meets_target": evaluation.wsl_seconds < EVAL_TARGET_SECONDS,
        },
    }
