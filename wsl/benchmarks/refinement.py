"""Does refinement help? WSDDN, OICR, PCL and MIST with the same budget, from a supervised
backbone or from scratch.

    python -m wsl.benchmarks.refinement --seeds 3 --out refinement.json                # pretrained
    python -m wsl.benchmarks.refinement --seeds 3 --backbone scratch --out scratch.json

Generates a data set (``wsl.data.generate``; ``--difficulty`` and ``--proposals`` set how hard;
default ``parts``: objects whose discriminative head covers a third of them, the case refinement
is meant for). With ``--backbone crops`` (the default) the networks start from an AlexNet
trained with full labels on object-centric crops of the same classes
(:mod:`wsl.benchmarks.crop_backbone`, this project's ImageNet; made once into ``--workdir`` or
read from ``--backbone-file``), conv1 frozen as Fast R-CNN; with ``--backbone scratch`` from
random weights. For every method and seed it runs ``python -m wsl.train
experiment=<method>_demo`` in its own process (the demos differ only in the model and its
method's own recipe: the MIL loss averaged over classes for OICR, PCL and MIST, as their code,
and each one's pseudo-label rule; same data, transforms, Adam, budget) for ``2 x --epochs`` epochs,
keeping the checkpoint after ``--epochs`` epochs too: the learning rate is constant, so that
checkpoint is the ``--epochs`` run. Both checkpoints are scored
(:mod:`wsl.benchmarks.stream_scores`) on test (detection mAP) and trainval (CorLoc; median
top-box area over GT area, :mod:`wsl.benchmarks.top_boxes`: about 0.3 when the top boxes sit on
the heads, 1 on whole objects), every score source on its own (WSDDN's, each stream's, the
detections').

Prints, per budget, the mean ± std over the seeds per method and each method's gain over
WSDDN: the ratio of its value to WSDDN's of the same seed, as mean ± standard error over the
seeds. Writes every run's scores and the summary to ``--out`` (atomically). Not a timed test:
minutes per run on a CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsl.benchmarks.crop_backbone import save_backbone, train_backbone
from wsl.benchmarks.stream_scores import score_checkpoint
from wsl.data.generate import generate_voc
from wsl.data.generated_images import DIFFICULTIES
from wsl.runtime.atomic import atomic_path

METHODS = ("wsddn", "oicr", "pcl", "mist")
BACKBONES = ("crops", "scratch")
REPORTED = {  # name -> (split, header)
    "det_mAP": ("test", "detection mAP (test)"),
    "CorLoc": ("trainval", "CorLoc (trainval)"),
    "top_box_area_ratio": ("trainval", "top box area / GT area"),
}
GAINS = ("det_mAP", "CorLoc")  # the quantities whose ratio to WSDDN's is the gain
BASELINE = "wsddn"
SPLITS = sorted({split for split, _ in REPORTED.values()})


def train_command(
    method: str, seed: int, root: Path, epochs: int, run_dir: Path, weights: Path | None
) -> list[str]:
    """``wsl.train`` for ``experiment=<method>_demo`` on ``root`` for ``2 epochs`` epochs, with
    a checkpoint after ``epochs`` and at the end (``last.ckpt``); from ``weights`` (conv1
    frozen) or from scratch."""
    backbone = [f"model.net.weights={weights}", "model.net.freeze_conv1=true"] if weights else []
    checkpoint = (
        "callbacks.model_checkpoint={_target_: pytorch_lightning.callbacks.ModelCheckpoint, "
        f"dirpath: {run_dir}/checkpoints, filename: 'epoch_{{epoch:03d}}', "
        f"auto_insert_metric_name: false, every_n_epochs: {epochs}, save_top_k: -1}}"
    )
    return [
        sys.executable, "-m", "wsl.train", f"experiment={method}_demo", f"data.root={root}",
        "data.val_split=test", "+trainer.limit_val_batches=0", f"trainer.max_epochs={2 * epochs}",
        f"seed={seed}", "trainer.enable_progress_bar=false", "logger=[]",
        "callbacks.box_pictures=null", "callbacks.periodic_evaluation=null",
        "callbacks.histograms=null", checkpoint, f"hydra.run.dir={run_dir}", *backbone,
    ]  # fmt: skip


def train_and_score(
    method: str, seed: int, root: Path, epochs: int, run_dir: Path, weights: Path | None
) -> dict[str, Any]:
    """``{"<epochs>": scores, "<2 epochs>": scores}`` of one method and seed, each
    ``{split: {source: metrics}}`` (:func:`~wsl.benchmarks.stream_scores.score_checkpoint`);
    the run's checkpoints are deleted once scored (hundreds of MB each)."""
    command = train_command(method, seed, root, epochs, run_dir, weights)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{method} seed {seed} failed ({run_dir}):\n{result.stderr[-2000:]}")
    checkpoints = run_dir / "checkpoints"
    scores = {
        str(epochs): score_checkpoint(checkpoints / f"epoch_{epochs - 1:03d}.ckpt", SPLITS),
        str(2 * epochs): score_checkpoint(checkpoints / "last.ckpt", SPLITS),
    }
    shutil.rmtree(checkpoints)
    return scores


def reported(scores: dict[str, Any]) -> dict[str, float]:
    """The table's quantities of one checkpoint's scores (the model's detections)."""
    return {name: scores[split]["detections"][name] for name, (split, _) in REPORTED.items()}


def mean_std(values: Sequence[float]) -> list[float]:
    """``[mean, sample std]`` (std 0 for one value)."""
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per method: each reported quantity as ``[mean, std]`` over the seeds and, for every
    method but WSDDN, ``gain_<name>``: ``[mean, standard error]`` over the seeds of its value
    divided by WSDDN's of the same seed (runs are listed in seed order)."""
    summary: dict[str, dict[str, Any]] = {}
    for method, metrics in runs.items():
        summary[method] = {name: mean_std([m[name] for m in metrics]) for name in REPORTED}
        if method == BASELINE or BASELINE not in runs:
            continue
        for name in GAINS:
            ratios = [
                m[name] / b[name] if b[name] > 0 else math.inf
                for m, b in zip(metrics, runs[BASELINE], strict=True)
            ]
            mean, std = mean_std(ratios)
            summary[method][f"gain_{name}"] = [mean, std / math.sqrt(len(ratios))]
    return summary


def table(summary: dict[str, dict[str, Any]], num_seeds: int, epochs: int) -> str:
    """A Markdown table: per method, each quantity as mean ± std over the seeds, then the
    gains over WSDDN as mean ± standard error (one seed: the values alone)."""
    headers = [header for _, header in REPORTED.values()]
    headers += [f"{REPORTED[name][1].split(' (')[0]} / WSDDN's" for name in GAINS]
    seeds = f"{num_seeds} seed{'s' if num_seeds != 1 else ''}"
    lines = [
        f"| method ({seeds}, {epochs} epochs) | {' | '.join(headers)} |",
        "|---" * (len(headers) + 1) + "|",
    ]

    def cell(value: list[float], digits: int, unit: str = "") -> str:
        spread = f" ± {value[1]:.{digits}f}" if num_seeds > 1 else ""
        return f"{value[0]:.{digits}f}{unit}{spread}"

    for method, metrics in summary.items():
        cells = [cell(metrics[n], 3) for n in REPORTED]
        for name in GAINS:
            gain = metrics.get(f"gain_{name}")
            cells.append(cell(gain, 2, "x") if gain else "")
        lines.append(f"| {method} | {' | '.join(cells)} |")
    return "\n".join(lines)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The generated data set's, the crop backbone's and the work folder's options, shared by
    this benchmark and :mod:`wsl.benchmarks.second_stage`."""
    parser.add_argument(
        "--backbone-file",
        type=Path,
        default=None,
        help="a crop_backbone state dict (default: trained into --workdir)",
    )
    parser.add_argument("--trainval", type=int, default=96, help="generated trainval images")
    parser.add_argument("--test", type=int, default=64, help="generated test images")
    parser.add_argument("--proposals", type=int, default=50, help="generated proposals per image")
    parser.add_argument("--difficulty", choices=DIFFICULTIES, default="parts")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="data and runs (default: temp)")


def generate_data(args: argparse.Namespace, workdir: Path) -> Path:
    """The generated data set of :func:`add_data_arguments`' options, in ``workdir/data``."""
    root = workdir / "data"
    generate_voc(
        root, seed=args.data_seed, num_trainval=args.trainval, num_test=args.test,
        difficulty=args.difficulty, proposals_per_image=args.proposals,
    )  # fmt: skip
    return root


def crop_backbone(args: argparse.Namespace, workdir: Path) -> Path:
    """``--backbone-file``, or the crop backbone trained once into ``workdir/backbone``."""
    weights = args.backbone_file or workdir / "backbone" / "alexnet_crops.pt"
    if not weights.is_file():
        save_backbone(*train_backbone(difficulty=args.difficulty), weights)
    return weights


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 1..N per method")
    parser.add_argument("--epochs", type=int, default=8, help="the budget; also run to twice it")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--backbone", choices=BACKBONES, default="crops")
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("refinement.json"))
    args = parser.parse_args(argv)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="wsl_refinement_") as temp:
        workdir = args.workdir or Path(temp)
        root = generate_data(args, workdir)
        weights = crop_backbone(args, workdir) if args.backbone == "crops" else None
        budgets = (args.epochs, 2 * args.epochs)
        runs: dict[int, dict[str, list[dict[str, float]]]] = {
            b: {m: [] for m in args.methods} for b in budgets
        }
        scores: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
        for seed in range(1, args.seeds + 1):
            for method in args.methods:
                run_dir = workdir / f"{method}_seed{seed}"
                by_budget = train_and_score(method, seed, root, args.epochs, run_dir, weights)
                scores[method].append(by_budget)
                for budget in budgets:
                    runs[budget][method].append(reported(by_budget[str(budget)]))
                    print(f"{method} seed {seed}, {budget} epochs: {runs[budget][method][-1]}",
                          flush=True)  # fmt: skip
    summaries = {str(b): summarise(runs[b]) for b in budgets}
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "scores": scores,
              "summary": summaries}  # fmt: skip
    with atomic_path(args.out) as path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
    for budget in budgets:
        print(table(summaries[str(budget)], args.seeds, budget) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
