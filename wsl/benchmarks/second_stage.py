"""Does the second stage help? A weak model, then Fast R-CNN trained on its pseudo boxes, over
seeds, on the refinement benchmark's data and backbone.

    python -m wsl.benchmarks.second_stage --seeds 3 --out second_stage.json

The data and the pretrained regime are :mod:`wsl.benchmarks.refinement`'s (generated ``parts``
images; an AlexNet trained with full labels on object-centric crops, conv1 frozen). For every
seed: ``python -m wsl.train experiment=<method>_demo`` (default ``pcl``) for ``--epochs``
epochs, tested on test; then ``python -m wsl.retrain experiment=fast_rcnn_demo`` on its
checkpoint, from the same backbone with conv1 fixed (``freeze_blocks=1``), for
``--detector-epochs`` epochs of ``--detector-batch-size`` images per step (Fast R-CNN's two;
``wsl.retrain`` keeps the weak run's data, the demos' batches of 8, unless told): it mines
``retrain.rule`` (``--rule``) pseudo boxes on trainval, trains and tests on test. Each in its
own process.

Prints the mean ± std over the seeds of the weak model's test ``det_mAP``, the pseudo boxes'
trainval CorLoc and the detector's test ``det_mAP``, and the detector's gain: the ratio of its
mAP to the weak model's of the same seed, mean ± standard error. Writes every run's numbers
and the summary to ``--out`` (atomically). Not a timed test: minutes per run on a CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsl.benchmarks.refinement import (
    METHODS,
    add_data_arguments,
    crop_backbone,
    generate_data,
    mean_std,
)
from wsl.evaluation.results_files import read_results
from wsl.pseudo_labels.mining import RULES
from wsl.runtime.atomic import atomic_path

REPORTED = {  # name -> header
    "weak_det_mAP": "weak model: test mAP",
    "pseudo_CorLoc": "pseudo boxes: trainval CorLoc",
    "detector_det_mAP": "Fast R-CNN on them: test mAP",
}
QUIET = [
    "trainer.enable_progress_bar=false", "logger=[]", "callbacks.box_pictures=null",
    "callbacks.periodic_evaluation=null", "callbacks.histograms=null",
]  # fmt: skip


def weak_command(method: str, seed: int, root: Path, epochs: int, run_dir: Path,
                 weights: Path) -> list[str]:  # fmt: skip
    """``wsl.train experiment=<method>_demo`` from ``weights`` (conv1 frozen), tested on test."""
    return [
        sys.executable, "-m", "wsl.train", f"experiment={method}_demo", f"data.root={root}",
        "data.val_split=test", "+trainer.limit_val_batches=0", f"trainer.max_epochs={epochs}",
        f"seed={seed}", f"model.net.weights={weights}", "model.net.freeze_conv1=true", *QUIET,
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def detector_command(checkpoint: Path, seed: int, epochs: int, batch_size: int, rule: str,
                     run_dir: Path, weights: Path) -> list[str]:  # fmt: skip
    """``wsl.retrain experiment=fast_rcnn_demo`` on the weak ``checkpoint``, from ``weights``
    (conv1 fixed), ``batch_size`` images per step."""
    return [
        sys.executable, "-m", "wsl.retrain", "experiment=fast_rcnn_demo",
        f"ckpt_path={checkpoint}", f"retrain.rule.rule={rule}", f"trainer.max_epochs={epochs}",
        f"data.batch_size={batch_size}", "+trainer.limit_val_batches=0", f"seed={seed}",
        f"model.net.weights={weights}", "model.net.freeze_blocks=1", *QUIET,
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def run(command: list[str], name: str, run_dir: Path) -> dict[str, Any]:
    """Run ``command``; its ``metrics.json`` metrics, or ``RuntimeError`` with its stderr."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    metrics = read_results(run_dir)
    if result.returncode != 0 or metrics is None:
        raise RuntimeError(f"{name} failed ({run_dir}):\n{result.stderr[-2000:]}")
    return metrics["metrics"]


def one_seed(args: argparse.Namespace, seed: int, root: Path, weights: Path,
             workdir: Path) -> dict[str, float]:  # fmt: skip
    """The reported numbers of one seed; the runs' checkpoints are deleted (hundreds of MB)."""
    weak_dir, detector_dir = workdir / f"weak_seed{seed}", workdir / f"detector_seed{seed}"
    weak = run(weak_command(args.method, seed, root, args.epochs, weak_dir, weights),
               f"{args.method} seed {seed}", weak_dir)  # fmt: skip
    command = detector_command(
        weak_dir / "checkpoints" / "last.ckpt", seed, args.detector_epochs,
        args.detector_batch_size, args.rule, detector_dir, weights,
    )  # fmt: skip
    detector = run(command, f"retrain seed {seed}", detector_dir)
    for directory in (weak_dir, detector_dir):
        shutil.rmtree(directory / "checkpoints", ignore_errors=True)
    return {
        "weak_det_mAP": weak["det_mAP"], "pseudo_CorLoc": detector["pseudo_CorLoc"],
        "detector_det_mAP": detector["det_mAP"],
    }  # fmt: skip


def summarise(runs: Sequence[dict[str, float]]) -> dict[str, list[float]]:
    """Each reported quantity as ``[mean, std]`` over the seeds, and ``gain``: the detector's
    mAP over the weak model's of the same seed, ``[mean, standard error]``."""
    summary = {name: mean_std([r[name] for r in runs]) for name in REPORTED}
    ratios = [
        r["detector_det_mAP"] / r["weak_det_mAP"] if r["weak_det_mAP"] > 0 else math.inf
        for r in runs
    ]
    mean, std = mean_std(ratios)
    summary["gain"] = [mean, std / math.sqrt(len(ratios))]
    return summary


def table(summary: dict[str, list[float]], method: str, num_seeds: int) -> str:
    """A Markdown row per quantity: mean ± std over the seeds (the gain: ± standard error)."""
    seeds = f"{num_seeds} seed{'s' if num_seeds != 1 else ''}"
    lines = [f"| {method} → Fast R-CNN ({seeds}) | mean ± std |", "|---|---|"]
    lines += [f"| {header} | {summary[n][0]:.3f} ± {summary[n][1]:.3f} |"
              for n, header in REPORTED.items()]  # fmt: skip
    gain = summary["gain"]
    lines.append(f"| detector mAP / weak mAP | {gain[0]:.2f}x ± {gain[1]:.2f} (s.e.) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 1..N")
    parser.add_argument("--method", choices=METHODS, default="pcl", help="the weak model")
    parser.add_argument("--epochs", type=int, default=8, help="the weak model's epochs")
    parser.add_argument("--detector-epochs", type=int, default=8)
    parser.add_argument(
        "--detector-batch-size",
        type=int,
        default=2,
        help="images per step (Fast R-CNN's 2; the weak demos' data has 8)",
    )
    parser.add_argument("--rule", choices=RULES, default="top1", help="retrain.rule.rule")
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("second_stage.json"))
    args = parser.parse_args(argv)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="wsl_second_stage_") as temp:
        workdir = args.workdir or Path(temp)
        root = generate_data(args, workdir)
        weights = crop_backbone(args, workdir)
        runs = []
        for seed in range(1, args.seeds + 1):
            runs.append(one_seed(args, seed, root, weights, workdir))
            print(f"seed {seed}: {runs[-1]}", flush=True)
    summary = summarise(runs)
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
              "summary": summary}  # fmt: skip
    with atomic_path(args.out) as path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(table(summary, args.method, args.seeds))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
