"""The second stage's data and mining (issue 18): a training split whose object boxes are pseudo
boxes from a COCO-format file, and pseudo boxes mined from a trained model over a split."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.support import CLASSES, proposals_config
from wsl.checkpoint import RunCheckpoint
from wsl.data.bad_input import DataError
from wsl.data.coco_pseudo_labels import PseudoLabelImage, write_coco_pseudo_labels
from wsl.data.datamodule import VOCProposalsDataModule
from wsl.evaluation.corloc import CorLocEvaluator
from wsl.pseudo_labels.mining import PseudoLabelRule
from wsl.structures.detections import ImageDetections
from wsl.training.module import ground_truths_of, inference_context
from wsl.training.pseudo_label_mining import mine_split, positive_classes

SMALL = {"resize": "shortest_side", "scales": [64], "max_size": None, "flip": False}


def datamodule(root: Path, pseudo_labels: Path | None) -> VOCProposalsDataModule:
    return VOCProposalsDataModule(
        str(root), train_split="trainval", val_split="test", test_split="trainval",
        proposals=proposals_config(root), batch_size=2, train_transform=SMALL, eval_transform=SMALL,
        pseudo_labels=None if pseudo_labels is None else str(pseudo_labels),
    )  # fmt: skip


def one_box_each(records) -> list[PseudoLabelImage]:
    """A pseudo box per image: its top-left quarter, labelled with its first object's class."""
    images = []
    for r in records:
        a = r.annotation
        box = np.array([[0.0, 0.0, a.width // 2 - 1, a.height // 2 - 1]])
        c = CLASSES.index(a.objects[0].name)
        found = ImageDetections.of(box, np.array([0.9]), np.array([c]))
        images.append(PseudoLabelImage(a.image_id, a.width, a.height, found))
    return images


def test_the_training_split_trains_on_the_pseudo_boxes_and_the_rest_keeps_the_xml(
    generated_root: Path, tmp_path: Path
) -> None:
    plain = datamodule(generated_root, None)
    records = plain.dataset("trainval").index.records
    path = write_coco_pseudo_labels(tmp_path / "pseudo.json", one_box_each(records), CLASSES)
    data = datamodule(generated_root, path)
    train, evaluated = data.dataset("trainval", train=True), data.dataset("trainval")
    assert train.index.pseudo_labels == path and evaluated.index.pseudo_labels is None
    sample, xml = train[0], evaluated[0]
    a = records[0].annotation
    # the pseudo box is the quarter, in pixels on disk, with the first object's class
    assert sample["original_gt_boxes"].tolist() == [[0.0, 0.0, a.width // 2 - 1, a.height // 2 - 1]]
    assert sample["gt_boxes"].shape == (1, 4)  # and resized with the image
    assert sample["gt_classes"].tolist() == [CLASSES.index(a.objects[0].name)]
    assert len(xml["gt_boxes"]) == len(a.objects)  # evaluation keeps the annotation's boxes
    torch.testing.assert_close(sample["labels"], xml["labels"])  # the image labels stay
    assert not sample["gt_difficult"].any()
    # the evaluation index is not the pseudo one, whichever is asked for first
    again = datamodule(generated_root, path)
    assert again.dataset("trainval").index.pseudo_labels is None
    assert again.dataset("trainval", train=True).index.pseudo_labels == path


def test_a_file_for_another_split_or_data_set_is_refused_naming_it(
    generated_root: Path, tmp_path: Path
) -> None:
    records = datamodule(generated_root, None).dataset("trainval").index.records
    images = one_box_each(records)
    short = write_coco_pseudo_labels(tmp_path / "short.json", images[1:], CLASSES)
    with pytest.raises(DataError, match=rf"short\.json: has no pseudo-labels for image "
                       rf"'{records[0].image_id}' of split 'trainval'"):  # fmt: skip
        datamodule(generated_root, short).dataset("trainval", train=True)
    first = images[0]
    resized = [first._replace(width=first.width + 1), *images[1:]]
    other = write_coco_pseudo_labels(tmp_path / "other.json", resized, CLASSES)
    with pytest.raises(DataError, match=r"other\.json: .* mined on another data set"):
        datamodule(generated_root, other).dataset("trainval", train=True)


def test_mined_top1_boxes_are_the_models_top_box_per_labelled_class(
    localizer_ckpt: Path, generated_root: Path
) -> None:
    checkpoint = RunCheckpoint.read(localizer_ckpt)
    module = checkpoint.build_module()
    cfg = checkpoint.config.data.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.root, cfg.test_split, cfg.num_workers = str(generated_root), "trainval", 0
    data = hydra.utils.instantiate(cfg)
    data.setup("test")
    mined = mine_split(module, data.test_dataloader(), PseudoLabelRule("top1"))
    split = data.dataset("trainval").index
    assert [i.image_id for i in mined.images] == [r.image_id for r in split.records]
    # Per image: one box per labelled class, the model's best of that class; CorLoc of those
    # boxes is the model's own CorLoc (it judges the top box of every labelled class).
    evaluator = CorLocEvaluator(CLASSES)
    boxes = 0
    for batch in data.test_dataloader():
        with inference_context(module):
            detections = module.detect(batch)
        evaluator.process(batch["image_id"], detections, ground_truths_of(batch))
        for i, found in enumerate(detections):
            found = ImageDetections.of(*found)
            labelled = positive_classes(batch, i)
            entry = next(m for m in mined.images if m.image_id == batch["image_id"][i])
            assert sorted(entry.labels.classes.tolist()) == sorted(
                c for c in labelled if found.top_of_class(c) is not None
            )
            for box, c in zip(entry.labels.boxes, entry.labels.classes, strict=True):
                np.testing.assert_array_equal(box, found.boxes[found.top_of_class(int(c))])
            boxes += len(entry.labels.classes)
    assert mined.counts["images"] == len(split) and mined.counts["pseudo_boxes"] == boxes > 0
    assert mined.corloc["CorLoc"] == pytest.approx(evaluator.evaluate()["CorLoc"])
    assert mined.images[0].width == split.records[0].annotation.width
