"""A VOC devkit data set written again in COCO's layout, proposals as wetectron's pickles.

:func:`write_coco_layout` reads splits of a VOC folder (:class:`~wsl.data.voc.VOCIndex`) and
writes what :class:`~wsl.data.coco.COCOIndex` reads: ``annotations/instances_<split>.json``,
the images in ``<split>/`` (hard links where the file system allows, else copies) and, for
the splits given a proposal ``.mat``, ``proposals/<split>.pkl`` in the form
:mod:`wsl.data.proposal_mcg` reads (wetectron's: ``boxes`` 0-based ``x1, y1, x2, y2``,
``indexes``, ``scores`` where the file has them). The generated data set is written in both
layouts this way (``python -m wsl.data.generate --layout coco``), so a test can check that
both readers give the same data.

Ids: an image's COCO id is its VOC id's number (:meth:`~wsl.data.split_index.SplitIndex.
coco_image_ids`), so ``000005`` becomes ``5``; VOC's difficult objects become crowd regions
(``iscrowd: 1``, COCO's one way to ignore a ground truth): both count for the image's label
(``data.difficult_labels=positive``) and are ignored in evaluation.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from wsl.data.coco_ground_truth import coco_ground_truth
from wsl.data.proposals import MatProposals
from wsl.data.voc import VOCIndex
from wsl.runtime.atomic import atomic_path


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_coco_layout(
    voc_root: str | Path,
    coco_root: str | Path,
    splits: Sequence[str],
    category_ids: Sequence[int] | None = None,
    proposal_mats: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write ``splits`` of the VOC folder under ``voc_root`` in COCO's layout under
    ``coco_root``; return ``coco_root``.

    ``category_ids`` numbers the classes (default 1..C); ``proposal_mats`` maps a split to
    its Fast R-CNN ``.mat`` (``yxyx``), written as ``proposals/<split>.pkl``.
    """
    coco_root = Path(coco_root)
    (coco_root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in splits:
        index = VOCIndex(voc_root, split, verify_images="none")
        ground_truth = coco_ground_truth(index)
        if category_ids is not None:
            renumber = dict(zip(index.category_ids, category_ids, strict=True))
            for category in ground_truth["categories"]:
                category["id"] = renumber[category["id"]]
            for annotation in ground_truth["annotations"]:
                annotation["category_id"] = renumber[annotation["category_id"]]
        image_dir = coco_root / split
        image_dir.mkdir(exist_ok=True)
        for record, image in zip(index.records, ground_truth["images"], strict=True):
            _link_or_copy(record.image_path, image_dir / image["file_name"])
        with atomic_path(coco_root / "annotations" / f"instances_{split}.json") as tmp:
            tmp.write_text(json.dumps(ground_truth))
        if proposal_mats and split in proposal_mats:
            _write_proposal_pickle(index, Path(proposal_mats[split]), coco_root / "proposals")
    return coco_root


def _write_proposal_pickle(index: VOCIndex, mat: Path, directory: Path) -> None:
    """``directory/<split>.pkl``: the ``.mat``'s proposals of ``index``'s images, unfiltered."""
    ids = [record.image_id for record in index.records]
    lookup = MatProposals(str(mat)).load(ids)
    coco_ids = index.coco_image_ids()
    payload: dict[str, list] = {"boxes": [], "indexes": [], "scores": []}
    for image_id in ids:
        proposals = lookup[image_id]
        payload["boxes"].append(np.asarray(proposals.boxes, dtype=np.float32))
        payload["indexes"].append(coco_ids[image_id])
        if proposals.scores is not None:
            payload["scores"].append(np.asarray(proposals.scores, dtype=np.float32))
    if len(payload["scores"]) != len(ids):
        del payload["scores"]
    directory.mkdir(exist_ok=True)
    with atomic_path(directory / f"{index.split}.pkl") as tmp, tmp.open("wb") as file:
        pickle.dump(payload, file, protocol=pickle.HIGHEST_PROTOCOL)


def write_generated_coco(
    root: str | Path, coco_root: str | Path, category_ids: Sequence[int] | None = None
) -> Path:
    """The generated data set under ``root`` (:func:`~wsl.data.generate.generate_voc`) in
    COCO's layout under ``coco_root``: its four splits and their proposals."""
    mats = Path(root) / "selective_search_data"
    trainval, test = mats / "voc_2007_trainval.mat", mats / "voc_2007_test.mat"
    proposal_mats = {"train": trainval, "val": trainval, "trainval": trainval, "test": test}
    return write_coco_layout(root, coco_root, list(proposal_mats), category_ids, proposal_mats)
