"""Every score source of a WSDDN, OICR or PCL checkpoint, scored on its own.

A refinement model detects with the mean of its K streams' class scores; to see where it gains
or loses, each source is scored alone on the same images, with the model's test-time settings
(NMS, threshold, top k, TTA): ``WSDDN`` (the region scores of the MIL head), ``stream 1`` ...
``stream K`` (each refinement stream's class scores, background dropped) and ``detections``
(what the model's ``detect`` ranks: WSDDN's region scores for WSDDN, the streams' mean for
OICR and PCL), by the family's ``detections_by_source``: one forward pass per test-time view
for all sources. For each source and split: VOC07 detection mAP and its per-class APs, CorLoc
and its per-class values, and the median top-box area over GT area
(:mod:`wsl.benchmarks.top_boxes`).

    python -m wsl.benchmarks.stream_scores CKPT --splits test trainval
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import open_dict

from wsl.benchmarks.top_boxes import top_box_area_ratio
from wsl.checkpoint import RunCheckpoint
from wsl.data.class_order import match_classes
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.training.module import ground_truths_of, inference_context


def score_checkpoint(
    ckpt_path: str | Path, splits: Sequence[str], root: str | Path | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {source: metrics}}`` for the checkpoint's model on each split of its data
    (or of the data set at ``root``): ``det_mAP``, ``ap_per_class``, ``CorLoc``,
    ``corloc_per_class``, ``top_box_area_ratio``."""
    checkpoint = RunCheckpoint.read(ckpt_path)
    module = checkpoint.build_module()
    sources = module.net.score_sources()  # "model" is reported as "detections"
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    for split in splits:
        data_cfg = checkpoint.config.data.copy()
        with open_dict(data_cfg):
            data_cfg.test_split = split
            data_cfg.num_workers = 0
            if root is not None:
                data_cfg.root = str(root)
            match_classes(data_cfg, ckpt_path, checkpoint.class_names)
        datamodule = hydra.utils.instantiate(data_cfg)
        datamodule.setup("test")
        evaluators = {
            name: (VOCDetectionEvaluator(checkpoint.class_names),
                   CorLocEvaluator(checkpoint.class_names))
            for name in sources
        }  # fmt: skip
        for batch in datamodule.test_dataloader():
            ground_truths = ground_truths_of(batch)
            with inference_context(module):
                by_source = module.net.detections_by_source(batch, sources)
            for name, detections in by_source.items():
                for evaluator in evaluators[name]:
                    evaluator.process(batch["image_id"], detections, ground_truths)
        scores[split] = {}
        for name, (ap, corloc) in evaluators.items():
            ap_results, corloc_results = ap.evaluate(), corloc.evaluate()
            records = corloc.gathered_detections()
            scores[split]["detections" if name == "model" else name] = {
                "det_mAP": ap_results["mAP"],
                "ap_per_class": ap_results["ap_per_class"],
                "CorLoc": corloc_results["CorLoc"],
                "corloc_per_class": corloc_results["corloc_per_class"],
                "top_box_area_ratio": top_box_area_ratio(*records),
            }
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("ckpt", type=Path, help="a checkpoint written by wsl.train")
    parser.add_argument("--splits", nargs="+", default=["test", "trainval"])
    parser.add_argument("--root", type=Path, default=None, help="another data root")
    args = parser.parse_args(argv)
    scores = score_checkpoint(args.ckpt, args.splits, args.root)
    for split, by_source in scores.items():
        for name, metrics in by_source.items():
            print(
                f"{split:>10} {name:>11}: mAP {metrics['det_mAP']:.3f} CorLoc "
                f"{metrics['CorLoc']:.3f} top box / GT {metrics['top_box_area_ratio']:.2f}"
            )
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
