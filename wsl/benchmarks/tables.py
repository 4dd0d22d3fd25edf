"""The benchmark report as the text tables ``python -m wsl.bench`` prints
(:func:`format_report`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wsl.benchmarks.suite import NUM_CLASSES

MIB = 2**20


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
        f"conv1_x and conv2_x frozen; fast_rcnn and faster_rcnn: the second stage's supervised "
        f"detector on the same AlexNet), {NUM_CLASSES} classes, up to {sizes['proposals']} "
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
