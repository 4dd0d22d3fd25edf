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

What is measured and how much: :mod:`wsl.benchmarks.suite`; the ratios:
:mod:`wsl.benchmarks.report`; the tables: :mod:`wsl.benchmarks.tables`.

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
from pathlib import Path
from typing import Any

import torch

from wsl.benchmarks.data_loader import (
    generate_loader_data,
    measure_data_loader,
    proposals_datamodule,
)
from wsl.benchmarks.evaluation import measure_evaluation
from wsl.benchmarks.report import build_report
from wsl.benchmarks.suite import NUM_CLASSES, SIZES, train_setups
from wsl.benchmarks.tables import format_report
from wsl.benchmarks.training import TrainWork, measure_training_in_subprocess
from wsl.runtime.atomic import atomic_path

log = logging.getLogger(__name__)


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
