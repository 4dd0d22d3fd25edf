"""How much of each object a detector's top box covers: the diagnostic of WSDDN's part domination.

For every (image, class present in it) pair, as CorLoc counts them, take the detector's
top-scoring box of that class and the ground-truth box of that class it overlaps most;
:func:`top_box_area_ratio` is the median over the pairs of the top box's area divided by that
GT box's area. WSDDN's top box on the most discriminative part of an object gives ratios well
below 1 (a head a third of the object's box: about 0.3); a detector that finds whole objects
gives about 1. Read from a run's devkit results files (``comp4_det_<split>_<class>.txt``) and
the split's annotations; difficult objects count, as in CorLoc. Hand-written: no library
reports this.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from wsl.data.annotations import parse_voc_xml, read_class_list, read_image_set
from wsl.structures.boxes import voc_area, voc_iou


def top_boxes(run_dir: Path, split: str, classes: list[str]) -> dict[tuple[str, int], np.ndarray]:
    """``(image id, class index) -> top-scoring box`` (0-based) from a run's results files."""
    best: dict[tuple[str, int], tuple[float, np.ndarray]] = {}
    for c, name in enumerate(classes):
        for line in (run_dir / f"comp4_det_{split}_{name}.txt").read_text().splitlines():
            image_id, score, *box = line.split()
            if (image_id, c) not in best or float(score) > best[image_id, c][0]:
                best[image_id, c] = (float(score), np.array(box, dtype=np.float64) - 1)
    return {key: box for key, (_, box) in best.items()}


def top_box_area_ratio(run_dir: str | Path, voc_dir: str | Path, split: str) -> float:
    """Median over (image, present class) pairs of top-box area / matched GT-box area (a pair
    without a detection of its class is left out; NaN when no pair has one)."""
    classes = list(read_class_list(voc_dir))
    found = top_boxes(Path(run_dir), split, classes)
    ratios = []
    for image_id in read_image_set(voc_dir, split):
        annotation = parse_voc_xml(Path(voc_dir) / "Annotations" / f"{image_id}.xml", classes)
        gt_by_class: dict[int, list[tuple[float, ...]]] = defaultdict(list)
        for obj in annotation.objects:
            gt_by_class[classes.index(obj.name)].append(obj.box)
        for c, gt_boxes in gt_by_class.items():
            if (image_id, c) in found:
                top, gts = found[image_id, c], np.array(gt_boxes, dtype=np.float64)
                matched = gts[np.argmax(voc_iou(top[None], gts))]
                ratios.append(voc_area(top) / voc_area(matched))
    return float(np.median(ratios)) if ratios else float("nan")
