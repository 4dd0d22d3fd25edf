"""Does refinement help? WSDDN, OICR and PCL trained from scratch with the same budget.

    python -m wsl.benchmarks.refinement --seeds 3 --out refinement.json

Generates a data set (``wsl.data.generate``; ``--difficulty`` and ``--proposals`` set how hard;
default ``parts``: objects whose discriminative head covers a third of them, the case
refinement is meant for), then for every method and seed runs ``python -m wsl.train
experiment=<method>_demo`` in its own process (the demos differ only in the model: same data,
transforms, Adam, epochs), tested on trainval so that CorLoc is reported, and reads each run's
``metrics.json``. Prints the mean and standard deviation over the seeds of detection mAP,
CorLoc and the median top-box area over GT area (:mod:`wsl.benchmarks.top_boxes`: about 0.3
when the top boxes sit on the heads, 1 on whole objects) per method, and writes every run's
metrics and the summary to ``--out`` (atomically). Not a timed test: minutes per run on a CPU."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsl.benchmarks.top_boxes import top_box_area_ratio
from wsl.data.generate import DIFFICULTIES, generate_voc
from wsl.evaluation.results_files import read_results
from wsl.runtime.atomic import atomic_path

METHODS = ("wsddn", "oicr", "pcl")
REPORTED = ("det_mAP", "CorLoc", "top_box_area_ratio")
HEADERS = ("detection mAP", "CorLoc", "top box area / GT area")


def train_run(method: str, seed: int, root: Path, epochs: int, run_dir: Path) -> dict[str, float]:
    """The test metrics of one ``experiment=<method>_demo`` run on ``root`` (tested on
    trainval), and the median ``top_box_area_ratio`` of its top boxes (:mod:`.top_boxes`)."""
    command = [
        sys.executable, "-m", "wsl.train", f"experiment={method}_demo", f"data.root={root}",
        "data.test_split=trainval", "data.val_split=test", f"trainer.max_epochs={epochs}",
        f"seed={seed}", "trainer.enable_progress_bar=false", "logger=[]",
        "callbacks.box_pictures=null", "callbacks.periodic_evaluation=null",
        "callbacks.histograms=null", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{method} seed {seed} failed ({run_dir}):\n{result.stderr[-2000:]}")
    metrics = read_results(run_dir)["metrics"]
    voc_dir = root / "VOCdevkit" / "VOC2007"
    return {**metrics, "top_box_area_ratio": top_box_area_ratio(run_dir, voc_dir, "trainval")}


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """Per method and metric: ``[mean, std]`` over the seeds (std 0 for one seed)."""
    summary: dict[str, dict[str, list[float]]] = {}
    for method, metrics in runs.items():
        summary[method] = {}
        for name in REPORTED:
            values = [m[name] for m in metrics]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[method][name] = [statistics.fmean(values), std]
    return summary


def table(summary: dict[str, dict[str, list[float]]], num_seeds: int) -> str:
    """A Markdown table: per method, each reported quantity as mean ± std over the seeds."""
    lines = [
        f"| method ({num_seeds} seeds) | {' | '.join(f'{h} (mean ± std)' for h in HEADERS)} |",
        "|---" * (len(HEADERS) + 1) + "|",
    ]
    for method, metrics in summary.items():
        cells = [f"{metrics[n][0]:.3f} ± {metrics[n][1]:.3f}" for n in REPORTED]
        lines.append(f"| {method} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 1..N per method")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--trainval", type=int, default=96, help="generated trainval images")
    parser.add_argument("--proposals", type=int, default=50, help="generated proposals per image")
    parser.add_argument("--difficulty", choices=DIFFICULTIES, default="parts")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="data and runs (default: temp)")
    parser.add_argument("--out", type=Path, default=Path("refinement.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wsl_refinement_") as temp:
        workdir = args.workdir or Path(temp)
        root = workdir / "data"
        generate_voc(
            root, seed=args.data_seed, num_trainval=args.trainval, num_test=16,
            difficulty=args.difficulty, proposals_per_image=args.proposals,
        )  # fmt: skip
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
        for seed in range(1, args.seeds + 1):
            for method in args.methods:
                metrics = train_run(
                    method, seed, root, args.epochs, workdir / f"{method}_seed{seed}"
                )
                print(f"{method} seed {seed}: {metrics}", flush=True)
                runs[method].append(metrics)
    summary = summarise(runs)
    result: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()},
                              "runs": runs, "summary": summary}  # fmt: skip
    with atomic_path(args.out) as path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(table(summary, args.seeds))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
