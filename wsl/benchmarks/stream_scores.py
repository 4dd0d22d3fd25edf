"""Every score source of a WSDDN, OICR or PCL checkpoint, scored on its own.

A refinement model detects with the mean of its K streams' class scores; to see where it gains
or loses, each source is scored alone on the same images, with the model's test-time settings
(NMS, threshold, top k, TTA): ``WSDDN`` (the region scores of the MIL head), ``stream 1`` ...
``stream K`` (each refinement stream's class scores, background dropped) and ``detections``
(what the model's ``detect`` ranks: WSDDN's region scores for WSDDN, the streams' mean for
OICR and PCL). For each source and split: VOC07 detection mAP and its per-class APs, CorLoc
and its per-class values, and the median top-box area over GT area
(:mod:`wsl.benchmarks.top_boxes`).

    python -m wsl.benchmarks.stream_scores CKPT --splits test trainval
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import open_dict
from torch import Tensor

from wsl.benchmarks.top_boxes import top_box_area_ratio
from wsl.checkpoint import RunCheckpoint
from wsl.data.class_order import match_classes
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.evaluation.voc_detection import VOCDetectionEvaluator
from wsl.structures.detections import Detections
from wsl.training.base_module import eval_mode, ground_truths_of

Scorer = Callable[[Any], Tensor]  # a forward pass's output -> region scores (R, C)


def score_sources(module: Any) -> dict[str, Scorer]:
    """The region-score sources of a WSDDN or refinement module, by name."""
    sources: dict[str, Scorer] = {"WSDDN": lambda output: output.region_scores.float()}
    if hasattr(module, "stream_scores"):
        for k in range(len(module.refinement.streams)):
            sources[f"stream {k + 1}"] = lambda output, k=k: module.stream_scores(output)[k][
                :, 1:
            ].float()
    sources["detections"] = module.region_scores_for_detection
    return sources


def detections_by_source(
    module: Any, batch: Mapping[str, Any], sources: Mapping[str, Scorer]
) -> dict[str, list[Detections]]:
    """What ``module.detect(batch, scorer)`` gives for every source, from one forward pass per
    test-time view: the sources' scores side by side are averaged over the views together
    (averaging is per column), then each source's columns are post-processed alone."""
    with eval_mode(module):
        side_by_side = module.view_scores(
            batch, lambda output: torch.cat([scorer(output) for scorer in sources.values()], 1)
        )[0]
        num_classes, num_views = len(module.class_names), len(module.tta.views())
        return {
            name: module.postprocess(
                batch, [r[:, k * num_classes : (k + 1) * num_classes] for r in side_by_side],
                num_views,
            )
            for k, name in enumerate(sources)
        }  # fmt: skip


def score_checkpoint(
    ckpt_path: str | Path, splits: Sequence[str], root: str | Path | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {source: metrics}}`` for the checkpoint's model on each split of its data
    (or of the data set at ``root``): ``det_mAP``, ``ap_per_class``, ``CorLoc``,
    ``corloc_per_class``, ``top_box_area_ratio``."""
    checkpoint = RunCheckpoint.read(ckpt_path)
    module = checkpoint.build_module()
    sources = score_sources(module)
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
            for name, detections in detections_by_source(module, batch, sources).items():
                for evaluator in evaluators[name]:
                    evaluator.process(batch["image_id"], detections, ground_truths)
        scores[split] = {}
        for name, (ap, corloc) in evaluators.items():
            ap_results, corloc_results = ap.evaluate(), corloc.evaluate()
            records = corloc.gathered_detections()
            scores[split][name] = {
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
