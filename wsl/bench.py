"""How fast the project trains WSDDN, feeds it and evaluates it, each as a ratio against a plain
baseline measured in the same run (absolute numbers depend on the machine and its load; ratios
much less)::

    python -m wsl.bench [--device auto|cpu|cuda] [--quick] [--json PATH] [--num-workers N]

1. **Training step** (:mod:`wsl.benchmarks.training`): images/s and peak memory of the plain
   loop of the public ports (one image per step, float32) and of the project's batched step.
   On a GPU the project's step runs under bf16 autocast with channels-last tensors and
   ``cudnn.benchmark``, and a float32 row of the same batches shows what batching alone gives.
   On a CPU it runs in float32: under CPU bf16 autocast WSDDN's default ``roi_op=pool`` fails
   (torchvision's ``roi_pool`` has no CPU autocast kernel, so bfloat16 features meet float32
   boxes); ``roi_op=align`` runs, about twice as fast as float32 on an AVX512-BF16 CPU, a gain
   only CPUs with bf16 instructions give.
2. **Data pipeline** (:mod:`wsl.benchmarks.data_loader`): images/s that the
   ``data=voc_proposals`` train loader delivers with its configured workers, divided by the
   project step's images/s: above 1, the model never waits for data.
3. **Evaluation** (:mod:`wsl.benchmarks.evaluation`): VOC07 AP of 5000 images x 20 classes with
   300 detections per image (1.5 M detections) by ``voc_detection_ap``, against a port of
   py-faster-rcnn's ``voc_eval.py`` timed on 500 images and extrapolated linearly; both must
   give the same AP on those 500 images.

Sizes: on a GPU 2000 proposals per image, shorter side 600 (600x800 images), batches of 8; on a
CPU 300 proposals, shorter side 400, batches of 4 (a few minutes, most of them VGG16's two rows);
``--quick`` shrinks the work to seconds (the smoke test; each training row still starts a
process that imports torch). AlexNet, 20 classes, weights ``none``, fixed seeds; the last two
training rows are the WSDDN step on VGG16 at stride 16 (``vgg16``) and at stride 8
(``vgg16_dilated``, conv1_x and conv2_x frozen: ``experiment=oicr_vgg16``'s body).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from wsl.benchmarks.data_loader import (
    LoaderResult,
    generate_loader_data,
    measure_data_loader,
    proposals_datamodule,
)
from wsl.benchmarks.evaluation import EvaluationResult, measure_evaluation
from wsl.benchmarks.training import (
    TrainResult,
    TrainSetup,
    TrainWork,
    measure_training_in_subprocess,
)
from wsl.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

NUM_CLASSES = 20
EVAL_TARGET_SECONDS = 2.0  # voc_detection_ap on the full set, on a 2-core CPU
MIB = 2**20


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does."""

    scale: int  # shorter image side (training step and loader)
    proposals: int  # per image, at most
    batch_size: int  # the project's step and the loader
    train_images: int  # per timed pass of the training step
    timed_passes: int
    loader_images: int  # in the generated data set
    loader_image_size: int  # its longest possible image side, before resizing to ``scale``
    loader_epochs: int  # timed
    eval_images: int
    eval_detections: int  # per image
    eval_subset: int  # images the plain AP loop is timed on


SIZES = {
    "cuda": Sizes(
        scale=600, proposals=2000, batch_size=8, train_images=32, timed_passes=3,
        loader_images=64, loader_image_size=500, loader_epochs=2,
        eval_images=5000, eval_detections=300, eval_subset=500,
    ),
    "cpu": Sizes(
        scale=400, proposals=300, batch_size=4, train_images=4, timed_passes=2,
        loader_images=32, loader_image_size=500, loader_epochs=2,
        eval_images=5000, eval_detections=300, eval_subset=500,
    ),
    "quick": Sizes(
        scale=96, proposals=16, batch_size=2, train_images=2, timed_passes=1,
        loader_images=4, loader_image_size=96, loader_epochs=1,
        eval_images=100, eval_detections=30, eval_subset=20,
    ),
}  # fmt: skip


def train_setups(device: str, batch_size: int) -> list[TrainSetup]:
    """The plain baseline first, then the project's WSDDN step (its last row is the one the
    loader is compared with), then OICR's, PCL's and MIST's step with the same options, then that
    WSDDN
    step on VGG16 at stride 16 and at stride 8 (the OICR/PCL body)."""
    plain = TrainSetup("plain b=1 fp32", plain=True)
    if device == "cpu":
        wsddn = [TrainSetup(f"wsl b={batch_size} fp32", plain=False, batch_size=batch_size)]
    else:
        options = {"batch_size": batch_size, "channels_last": True, "cudnn_benchmark": True}
        wsddn = [
            TrainSetup(f"wsl b={batch_size} fp32", plain=False, **options),
            TrainSetup(f"wsl b={batch_size} bf16", plain=False, bf16=True, **options),
        ]
    project = wsddn[-1]
    refinement = [
        replace(project, name=project.name.replace("wsl", method, 1), refinement=method)
        for method in ("oicr", "pcl", "mist")
    ]
    vgg16 = [
        replace(project, name=project.name.replace("wsl", "wsl vgg16 s16", 1), backbone="vgg16"),
        replace(
            project,
            name=project.name.replace("wsl", "wsl vgg16 s8", 1),
            backbone="vgg16_dilated",
            freeze_blocks=2,
        ),
    ]
    return [plain, *wsddn, *refinement, *vgg16]


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
    (``device``: "cpu" or "cuda"; ``device_name``: what :func:`describe_device` says).

    Training ratios are against the first (plain) row, and for OICR, PCL and MIST also against the
    project's WSDDN step (the last AlexNet row without refinement), which the loader is compared
    with; the VGG16 stride-8 row is also compared with the stride-16 one (``vs_stride_16``).
    """
    plain = training[0]
    project = next(
        r
        for r in reversed(training)
        if r.setup.refinement is None and r.setup.backbone == "alexnet"
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
                    result.images_per_s / project.images_per_s if result.setup.refinement else None
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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns left-aligned (the first) or right-aligned (the others), two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  " + "  ".join(cells)

    return [line(header), *(line(row) for row in rows)]


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.0f} MiB"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _training_lines(report: dict[str, Any]) -> list[str]:
    sizes = report["sizes"]
    memory = "RSS growth" if report["device"] == "cpu" else "max allocated"
    rows = [
        [
            row["name"],
            f"{row['images_per_s']:.2f}",
            _mib(row["peak_memory_bytes"]),
            _times(row["speedup"]),
            _times(row["memory_ratio"]),
            _times(row.get("vs_wsddn")),
            _times(row.get("vs_stride_16")),
        ]
        for row in report["training"]
    ]
    return [
        f"Training step: WSDDN AlexNet (VGG16 in the vgg16 rows: s16 stride 16, s8 stride 8 with "
        f"conv1_x and conv2_x frozen), {NUM_CLASSES} classes, up to {sizes['proposals']} "
        f"proposals per image, shorter side {sizes['scale']}; {sizes['train_images']} images x "
        f"{sizes['timed_passes']} timed passes after a warm-up pass",
        *_table(
            [
                "setup",
                "images/s",
                f"peak memory ({memory})",
                "speed-up",
                "memory ratio",
                "vs WSDDN step",
                "vs stride 16",
            ],
            rows,
        ),
    ]


def _loader_lines(report: dict[str, Any]) -> list[str]:
    loader = report["data_loader"]
    verdict = "keeps up (the model never waits)" if loader["keeps_up"] else "the model waits"
    rows = [
        ["loader", f"{loader['images_per_s']:.2f}"],
        [f"training step ({loader['training_setup']})", f"{loader['training_images_per_s']:.2f}"],
    ]
    return [
        f"Data pipeline: data=voc_proposals train loader, {loader['num_workers']} workers, "
        f"batch {loader['batch_size']}, {loader['images']} generated images",
        *_table(["", "images/s"], rows),
        f"  loader / training step = {_times(loader['ratio'])}: {verdict}",
    ]


def _evaluation_lines(report: dict[str, Any]) -> list[str]:
    evaluation = report["evaluation"]
    subset = evaluation["subset_images"]
    rows = [
        [
            "wsl voc_detection_ap",
            f"{evaluation['wsl_seconds']:.2f}",
            f"{evaluation['wsl_subset_seconds']:.3f}",
        ],
        [
            "plain voc_eval.py loop",
            f"{evaluation['plain_seconds_extrapolated']:.2f} (extrapolated)",
            f"{evaluation['plain_subset_seconds']:.3f}",
        ],
        ["speed-up", _times(evaluation["speedup"]), _times(evaluation["subset_speedup"])],
    ]
    target = "met" if evaluation["meets_target"] else "missed"
    return [
        f"Evaluation: VOC07 AP, {evaluation['images']} images x {NUM_CLASSES} classes, "
        f"{evaluation['detections']:,} detections",
        *_table(["", "seconds", f"seconds on {subset} images"], rows),
        f"  target < {evaluation['target_seconds']:g} s: {target}; same AP on the {subset} "
        f"images: max |difference| = {evaluation['max_abs_ap_difference']:.3g}",
    ]


def format_report(report: dict[str, Any]) -> str:
    """The report as the tables ``python -m wsl.bench`` prints."""
    title = f"wsl benchmark on {report['device_name']}"
    if report["quick"]:
        title += " (--quick sizes)"
    sections = [[title], _training_lines(report), _loader_lines(report), _evaluation_lines(report)]
    return "\n\n".join("\n".join(lines) for lines in sections)


def describe_device(device: str) -> str:
    """``cpu`` with its architecture and torch threads, or the GPU's name."""
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} torch threads)"


def run(device: str, quick: bool, num_workers: int | None) -> dict[str, Any]:
    """Run the three benchmarks (training rows first, alone, one process each) and report."""
    sizes = SIZES["quick" if quick else device]
    work = TrainWork(
        device=device,
        scale=sizes.scale,
        proposals=sizes.proposals,
        images=sizes.train_images,
        timed_passes=sizes.timed_passes,
        num_classes=NUM_CLASSES,
    )
    training = []
    for setup in train_setups(device, sizes.batch_size):
        log.info("training step: %s ...", setup.name)
        training.append(measure_training_in_subprocess(setup, work))
    log.info("data loader ...")
    with tempfile.TemporaryDirectory(prefix="wsl-bench-") as root:
        generate_loader_data(
            Path(root), sizes.loader_images, sizes.loader_image_size, sizes.proposals, NUM_CLASSES
        )
        datamodule = proposals_datamodule(
            Path(root), sizes.batch_size, sizes.scale, sizes.proposals, num_workers
        )
        loader = measure_data_loader(datamodule, sizes.loader_epochs)
    log.info("evaluation ...")
    evaluation = measure_evaluation(
        sizes.eval_images, NUM_CLASSES, sizes.eval_detections, sizes.eval_subset
    )
    return build_report(device, describe_device(device), quick, sizes, training, loader, evaluation)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: parse, run, print the tables (and write the JSON report)."""
    parser = argparse.ArgumentParser(
        prog="python -m wsl.bench",
        description="Benchmark WSDDN training, its data pipeline and VOC07 AP against plain "
        "baselines measured in the same run.",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when available")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    parser.add_argument("--num-workers", type=int,
                        help="loader workers (default: the data config's)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (use --device cpu)")
    report = run(device, args.quick, args.num_workers)
    print(format_report(report))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
