"""``python -m wsl.retrain``: a weak checkpoint's pseudo boxes mined into the run directory, a
supervised detector trained on them and tested, on the session's briefly trained Localizer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

import wsl
from tests.support import CLASSES, compose_cfg, train_checkpoint
from wsl.checkpoint import RunCheckpoint
from wsl.data.coco_pseudo_labels import read_coco_pseudo_labels
from wsl.evaluate import evaluate
from wsl.predict import predict
from wsl.retrain import detector_data, mine, other_backbone_note, retrain
from wsl.runtime.settings import SettingError


def test_retrain_mines_pseudo_boxes_then_trains_and_tests_a_detector(
    localizer_ckpt: Path, generated_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "retrain"
    overrides = [
        f"ckpt_path={localizer_ckpt}", "model=faster_rcnn", "model.net.backbone=alexnet",
        "model.net.weights=none", "debug=fast", "data.batch_size=4",
    ]  # fmt: skip
    metrics = retrain(compose_cfg("retrain", overrides, run), overrides)
    weak_data = RunCheckpoint.read(localizer_ckpt).config.data
    split = weak_data.train_split
    pseudo = run / "pseudo_labels" / f"{split}.json"
    images = read_coco_pseudo_labels(pseudo, CLASSES)
    summary = json.loads((run / "pseudo_labels" / "summary.json").read_text())
    assert summary["images"] == len(images) > 0 and summary["split"] == split
    assert summary["pseudo_boxes"] == sum(len(i.labels.classes) for i in images)
    assert summary["CorLoc"] == metrics["pseudo_CorLoc"]
    assert math.isfinite(metrics["det_mAP"]) and 0 <= metrics["det_mAP"] <= 1
    # metrics.json: the detector's test metrics with the pseudo boxes' CorLoc beside them
    results = json.loads((run / "metrics.json").read_text())
    assert results["metrics"]["det_mAP"] == pytest.approx(metrics["det_mAP"])
    assert results["metrics"]["pseudo_CorLoc"] == summary["CorLoc"]
    assert results["per_class"]["pseudo_CorLoc"] == summary["corloc_per_class"]
    assert set(results["per_class"]["pseudo_CorLoc"]) == set(results["per_class"]["det_AP"])
    # pictures of a seeded sample of the pseudo boxes (retrain.pictures: 8)
    pictures = sorted((run / "pseudo_labels" / "pictures").glob("*.png"))
    assert len(pictures) == min(8, len(images))
    assert {p.stem for p in pictures} <= {i.image_id for i in images}
    # The detector's run: the weak run's data, this command's data.* on top, the pseudo boxes
    detector = RunCheckpoint.read(run / "checkpoints" / "last.ckpt")  # read checked
    assert detector.config.data.root == weak_data.root
    assert detector.config.data.batch_size == 4 != weak_data.batch_size
    assert detector.config.data.pseudo_labels == str(pseudo)
    assert detector.config.model.net._target_ == "wsl.models.supervised.SupervisedDetector"
    # and wsl.load, wsl.evaluate and wsl.predict take it as any family's checkpoint
    checkpoint = run / "checkpoints" / "last.ckpt"
    image = generated_root / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{images[0].image_id}.jpg"
    loaded = wsl.load(checkpoint, device="cpu", score_threshold=0.0)
    [found] = loaded.detect(str(image))
    assert found.boxes.shape[1] == 4 and len(found.scores) == len(found.classes)
    test_split = detector.config.data.test_split
    evaluate_overrides = [f"ckpt_path={checkpoint}", f"data.split={test_split}", "logger=none"]
    evaluated = evaluate(compose_cfg("evaluate", evaluate_overrides, tmp_path / "evaluate"))
    assert evaluated["metrics"]["det_mAP"] == pytest.approx(metrics["det_mAP"], abs=1e-6)
    predict_overrides = [f"ckpt_path={checkpoint}", f"input={image}", "score_threshold=0"]
    predicted = predict(compose_cfg("predict", predict_overrides, tmp_path / "predict"))
    assert set(predicted["images"]) == {image.name}


def test_the_command_lines_data_keys_apply_to_the_weak_runs_data() -> None:
    weak = OmegaConf.create({"root": "/data", "batch_size": 2, "train_split": "trainval"})
    overrides = ["data.batch_size=8", "+data.pseudo_labels=p.json", "model=fast_rcnn", "seed=3"]
    data = detector_data(weak, overrides)
    assert OmegaConf.to_container(data) == {
        "root": "/data", "batch_size": 8, "train_split": "trainval", "pseudo_labels": "p.json",
    }  # fmt: skip
    assert weak.batch_size == 2  # the weak run's config is not changed
    for refused in ("data=voc_labels", "data/proposals=selective_search", "~data.classes"):
        with pytest.raises(SettingError, match=r"uses the weak run's data"):
            detector_data(weak, [refused])


def test_a_line_says_when_the_detectors_trunk_is_not_the_weak_models() -> None:
    def config(backbone: str | None) -> DictConfig:
        return OmegaConf.create(
            {"model": {"net": {} if backbone is None else {"backbone": backbone}}}
        )

    assert other_backbone_note(config("vgg16"), config("alexnet")) == (
        "the detector's backbone is vgg16 (model.net.backbone), the weak model's alexnet: "
        "model.net.backbone=alexnet trains the detector on the weak model's trunk"
    )
    assert other_backbone_note(config("alexnet"), config("alexnet")) is None
    assert other_backbone_note(config("vgg16"), config(None)) is None  # the Localizer has none


def test_the_pseudo_boxes_do_not_depend_on_the_batch_size(
    generated_root: Path, tmp_path: Path
) -> None:
    """Mined one image per forward pass (retrain.batch_size=1), whatever data.batch_size is;
    mined in batches, the zero padding to the largest image moves WSDDN's boxes."""
    checkpoint = train_checkpoint(
        generated_root, tmp_path / "weak", "experiment=wsddn_demo",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0",
    )  # fmt: skip
    weak = RunCheckpoint.read(checkpoint)

    def mined(data_batch_size: int, mining_batch_size: int) -> list[list[list[float]]]:
        run = tmp_path / f"data{data_batch_size}_mining{mining_batch_size}"
        overrides = [f"ckpt_path={checkpoint}", f"retrain.batch_size={mining_batch_size}"]
        data = detector_data(weak.config.data, [f"data.batch_size={data_batch_size}"])
        path, _ = mine(compose_cfg("retrain", overrides, run), weak, data)
        return [image.labels.boxes.tolist() for image in read_coco_pseudo_labels(path, CLASSES)]

    one_at_a_time = mined(8, 1)
    assert mined(3, 1) == one_at_a_time
    assert mined(8, 8) != one_at_a_time


def test_a_negative_number_of_pictures_is_refused_before_any_work(tmp_path: Path) -> None:
    overrides = ["ckpt_path=nowhere.ckpt", "retrain.pictures=-1"]
    with pytest.raises(SettingError, match=r"retrain.pictures=-1: give a count, 0 for none"):
        retrain(compose_cfg("retrain", overrides, tmp_path / "run"), overrides)
