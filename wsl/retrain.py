"""``python -m wsl.retrain ckpt_path=<weak checkpoint> [model=fast_rcnn|faster_rcnn] ...``: the
second stage of weakly supervised detection.

1. The weak model (any family, read checked: :class:`~wsl.checkpoint.RunCheckpoint`) detects
   every image of ``data.train_split`` as its test does, ``retrain.batch_size`` images per
   forward pass (1, as OICR's ``test_train.py``: in a batch, images are zero-padded to the
   largest one, which moves every score a little, since a trunk's receptive field reaches the
   padding, and so which box comes first); ``retrain.rule`` keeps pseudo boxes of
   each image's labelled classes (:mod:`wsl.training.pseudo_label_mining`). They are written to
   ``<run dir>/pseudo_labels/<split>.json`` (COCO format, :mod:`wsl.data.coco_pseudo_labels`)
   with ``summary.json``: their counts and their CorLoc against that split's ground truth (how
   right the detector's teacher is); and ``pictures/<image id>.png`` of
   ``retrain.pictures`` images drawn with a seeded choice: ground truth white, pseudo boxes in
   their class colour with their scores.
2. The supervised detector (``model``) trains on them (``data.pseudo_labels``) and is tested,
   as ``python -m wsl.train`` does (:func:`wsl.train.train`: checkpoints, ``metrics.json``, the
   report); ``metrics.json`` gains ``pseudo_CorLoc`` (and its per-class column), which the
   report shows beside the detector's ``det_mAP``.

The data is the weak run's, from its checkpoint (root, splits, transforms, proposals), with this
command's ``data.*`` overrides on top. The detector starts from the backbone ``model.net`` names
(VGG16 from ImageNet by default; a line says so when the weak model's trunk was another), not
from the weak model's weights, as the papers' Fast R-CNN starts from ImageNet.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from wsl.callbacks.box_pictures import truth_and_boxes_picture
from wsl.checkpoint import RunCheckpoint
from wsl.data.class_order import match_classes
from wsl.data.coco_pseudo_labels import PseudoLabelImage, write_coco_pseudo_labels
from wsl.data.dataset import VOCDataset
from wsl.data.images import read_rgb_tensor
from wsl.detector import resolve_device
from wsl.drawing import save_png
from wsl.evaluation.results_files import read_results, write_results
from wsl.reporting.run_report import report_finished_run
from wsl.runtime.atomic import atomic_path
from wsl.runtime.console import quiet_console
from wsl.runtime.names import contained_path
from wsl.runtime.run_dir import ensure_writable
from wsl.runtime.run_failure import reported_run
from wsl.runtime.run_lock import run_dir_lock
from wsl.runtime.settings import SettingError
from wsl.train import train
from wsl.training.pseudo_label_mining import MinedSplit, mine_split

log = logging.getLogger(__name__)

PSEUDO_LABELS_DIR = "pseudo_labels"
SUMMARY_FILE = "summary.json"
PICTURES_DIR = "pictures"


def write_pictures(
    directory: Path, images: list[PseudoLabelImage], dataset: VOCDataset, count: int, seed: int
) -> list[Path]:
    """``<directory>/<image id>.png`` for ``count`` of ``images`` (a seeded choice): the image
    on disk with its ground-truth boxes (white) and its pseudo boxes (class colour, score)."""
    records = {record.image_id: record for record in dataset.index.records}
    names = dataset.index.classes
    chosen = random.Random(seed).sample(images, min(count, len(images)))
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for image in chosen:
        record = records[image.image_id]
        truth, pseudo = record.annotation, image.labels
        boxes = [
            (int(c), torch.from_numpy(box), float(score))
            for c, box, score in zip(pseudo.classes, pseudo.boxes, pseudo.scores, strict=True)
        ]
        picture = truth_and_boxes_picture(
            read_rgb_tensor(record.image_path), torch.from_numpy(truth.boxes()),
            truth.class_indices(names).tolist(), boxes, names,
        )  # fmt: skip
        # the image id comes from the data set's files: kept inside the pictures' folder
        paths.append(save_png(picture, contained_path(directory, f"{image.image_id}.png")))
    return paths


def other_backbone_note(cfg: DictConfig, weak_config: DictConfig) -> str | None:
    """A line saying that the detector's ``model.net.backbone`` is not the weak model's, and how
    to follow the weak one; ``None`` when they are the same or either has none."""
    backbone, weak = (OmegaConf.select(c, "model.net.backbone") for c in (cfg, weak_config))
    if backbone is None or weak is None or backbone == weak:
        return None
    return (
        f"the detector's backbone is {backbone} (model.net.backbone), the weak model's {weak}: "
        f"model.net.backbone={weak} trains the detector on the weak model's trunk"
    )


def detector_data(weak_data: DictConfig, overrides: list[str]) -> DictConfig:
    """The weak run's data config with the command line's ``data.*`` ``overrides`` on top
    (``data.key=value``, ``+data.key=value`` or ``++data.key=value``). Choosing another data
    group (``data=...``) or deleting a key (``~data...``) is refused: the data is the weak
    run's."""
    dotlist = []
    for override in overrides:
        key = override.lstrip("+")
        if key.startswith("data.") and not override.startswith("~"):
            dotlist.append(key.removeprefix("data."))
        elif key.startswith(("data=", "data/", "~data")):
            raise SettingError(
                f"{override}: wsl.retrain uses the weak run's data (its checkpoint's config); "
                "change single keys with data.<key>=value"
            )
    data = weak_data.copy()
    with open_dict(data):  # a key the weak run's config lacks may be added
        return OmegaConf.merge(data, OmegaConf.from_dotlist(dotlist))


def mine(cfg: DictConfig, weak: RunCheckpoint, data: DictConfig) -> tuple[Path, MinedSplit]:
    """Mine the weak model's pseudo boxes on ``data.train_split`` into the run directory."""
    module = weak.build_module(map_location=resolve_device("auto")).eval()
    split = data.train_split
    mining_data = data.copy()
    with open_dict(mining_data):
        mining_data.test_split = split
        mining_data.batch_size = cfg.retrain.batch_size  # 1: no image is padded to another's size
        mining_data.pseudo_labels = None
        # labelled in the weak model's class order (data.classes may list them otherwise)
        match_classes(mining_data, cfg.ckpt_path, weak.class_names)
    datamodule = hydra.utils.instantiate(mining_data)
    datamodule.setup("test")
    rule = hydra.utils.instantiate(cfg.retrain.rule)
    mined = mine_split(module, datamodule.test_dataloader(), rule)
    directory = Path(cfg.paths.output_dir) / PSEUDO_LABELS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    file = contained_path(directory, f"{split}.json")  # the split name comes from a checkpoint
    path = write_coco_pseudo_labels(file, mined.images, module.class_names)
    dataset = datamodule.dataset(datamodule.splits["test"])
    write_pictures(directory / PICTURES_DIR, mined.images, dataset, cfg.retrain.pictures, cfg.seed)
    summary = {
        "checkpoint": str(cfg.ckpt_path), "split": split, "rule": cfg.retrain.rule.rule,
        **mined.counts, **mined.corloc,
    }  # fmt: skip
    with atomic_path(directory / SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    log.info(
        "pseudo-labels of %s (%s): %d boxes on %d images, %d labelled classes without one; "
        "CorLoc %.4f -> %s",
        split, summary["rule"], mined.counts["pseudo_boxes"], mined.counts["images"],
        mined.counts["missing_classes"], mined.corloc["CorLoc"], path,
    )  # fmt: skip
    return path, mined


def retrain(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Mine, train and test (see the module docstring); ``overrides`` are the command line's
    (its ``data.*`` apply to the weak run's data). Returns the detector's final metrics with
    ``pseudo_CorLoc``."""
    ensure_writable(cfg.paths.output_dir)
    if cfg.retrain.pictures < 0:
        raise SettingError(f"retrain.pictures={cfg.retrain.pictures}: give a count, 0 for none")
    weak = RunCheckpoint.read(cfg.ckpt_path)
    data = detector_data(weak.config.data, overrides or [])
    with run_dir_lock(cfg.paths.output_dir):
        path, mined = mine(cfg, weak, data)
    note = other_backbone_note(cfg, weak.config)
    if note is not None:
        log.info(note)
    train_cfg = cfg.copy()
    with open_dict(train_cfg):
        del train_cfg.retrain
        train_cfg.ckpt_path = None  # the weak model is not the detector's starting point
        train_cfg.data = data
        train_cfg.data.pseudo_labels = str(path)
    metrics = {**train(train_cfg), "pseudo_CorLoc": mined.corloc["CorLoc"]}
    results = read_results(cfg.paths.output_dir) if cfg.test else None
    if results is not None:  # tested: the pseudo boxes' CorLoc beside the detector's metrics
        per_class = {**results["per_class"], "pseudo_CorLoc": mined.corloc["corloc_per_class"]}
        write_results(cfg.paths.output_dir, {**results["metrics"], **metrics}, per_class)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="retrain")
def main(cfg: DictConfig) -> None:
    """Entry point of ``python -m wsl.retrain``."""
    quiet_console()
    with reported_run(cfg.paths.output_dir, report=report_finished_run):
        metrics = retrain(cfg, list(HydraConfig.get().overrides.task))
    log.info(
        "pseudo-label CorLoc %.4f; detector det_mAP %.4f",
        metrics["pseudo_CorLoc"], metrics.get("det_mAP", float("nan")),
    )  # fmt: skip


if __name__ == "__main__":
    main()
