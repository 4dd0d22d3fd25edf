"""One training module (``WSLModule``) for every model family (a ``Family`` nn.Module):
``detect(batch)`` for the Localizer too, so the box pictures and the periodic evaluation work for
it; the shared optimizer building; one set of metric names; a new family trained with no change
to the module."""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.support import compose_cfg
from wsl.evaluation.coco_detection import COCO_METRICS
from wsl.inference.heatmaps import HeatmapBoxConfig, heatmap_boxes
from wsl.models.family import Family, Prediction, StepOutput
from wsl.models.localizer import LocalizerAlexNetRobust
from wsl.models.wsddn import WSDDN
from wsl.structures.detections import Detections
from wsl.train import train
from wsl.training.module import WSLModule

LOCALIZER = "wsl.models.localizer.LocalizerAlexNet"

BOX_CALLBACKS = (
    "+callbacks.box_pictures._target_=wsl.callbacks.box_pictures.BoxPictures",
    "+callbacks.box_pictures.num_images=3",
    "+callbacks.periodic_evaluation._target_="
    "wsl.callbacks.periodic_evaluation.PeriodicDetectionEvaluation",
    "+callbacks.periodic_evaluation.every_n_steps=1",
    "+callbacks.periodic_evaluation.max_images=4",
)


def localizer_overrides(root: Path, *extra: str) -> list[str]:
    return [
        "experiment=localizer_demo", f"data.root={root}", "data.num_workers=0",
        "data.batch_size=8", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false", "callbacks.heatmaps.num_final_images=1",
        "logger=tensorboard", *extra,
    ]  # fmt: skip


def test_localizer_box_pictures_and_periodic_evaluation(
    generated_root: Path, tmp_path: Path
) -> None:
    pictures = tmp_path / "boxes_out"
    extra = (*BOX_CALLBACKS, f"+callbacks.box_pictures.output_dir={pictures}", "test=false")
    train(compose_cfg("train", localizer_overrides(generated_root, *extra), tmp_path))
    steps = sorted(p.name for p in (pictures / "boxes" / "val").iterdir())
    assert steps == ["step_0", "step_2"]  # untrained and after the 2 steps
    for step in steps:
        files = sorted((pictures / "boxes" / "val" / step).glob("*.png"))
        assert len(files) == 3
        with Image.open(files[0]) as picture:
            assert picture.width >= 160 and picture.mode == "RGB"
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    scalars = events.Scalars("eval/det_mAP")
    assert [s.step for s in scalars] == [1, 2]
    assert all(0.0 <= s.value <= 1.0 for s in scalars)
    assert sum(t.startswith("boxes/val/") for t in events.Tags()["images"]) == 3


def untrained_localizer(**settings: object) -> WSLModule:
    torch.manual_seed(0)
    optimizer = {"_target_": "torch.optim.SGD", "lr": 0.1, "weight_decay": 0.5}
    net = {"_target_": LOCALIZER, "weights": "none"}
    return WSLModule(["a", "b", "c"], net=net, optimizer=optimizer, **settings)


def test_localizer_detect_reads_every_class_heatmap_in_eval_mode() -> None:
    module = untrained_localizer()
    module.train()
    images = torch.rand(2, 3, 160, 160)
    batch = {"image": images, "original_size": [(160, 160), (30, 50)]}
    detections = module.detect(batch)
    assert module.training  # the mode is restored
    module.eval()
    with torch.no_grad():
        output = module.net(images)
    for i, size in enumerate(batch["original_size"]):
        scores = torch.sigmoid(output.logits[i])
        expected = heatmap_boxes(output.score_maps[i], size, scores, module.net.box_config)
        boxes, found_scores, classes = detections[i]
        torch.testing.assert_close(boxes, expected.boxes)
        torch.testing.assert_close(found_scores, expected.scores)
        assert classes.tolist() == expected.classes.tolist()
        assert len(boxes) and boxes[:, 2].max() <= size[1] - 1
        assert boxes[:, 3].max() <= size[0] - 1
    one = {"image": images[:1], "original_size": [(160, 160)]}
    [found], [evidence] = module.detect_with_evidence(one)
    torch.testing.assert_close(found[0], detections[0][0])
    class_scores, heatmaps, predicted = evidence
    assert predicted == ()  # wsl.predict's class_threshold chooses them
    torch.testing.assert_close(class_scores, torch.sigmoid(output.logits[0]))
    assert heatmaps.shape == output.score_maps[0].shape and 0 <= heatmaps.min() <= 1


def test_filtering_every_class_boxes_equals_boxes_of_the_chosen_classes() -> None:
    """``wsl.predict`` keeps the Localizer's boxes of its predicted classes from ``detect``'s
    boxes of every class; per-class boxes do not depend on the other classes."""
    generator = torch.Generator().manual_seed(3)
    maps = torch.rand(4, 6, 6, generator=generator)
    scores = torch.tensor([0.9, 0.2, 0.6, 0.05])
    config = HeatmapBoxConfig(min_class_score=0.1)
    every = heatmap_boxes(maps, (48, 40), scores, config)
    chosen = heatmap_boxes(maps, (48, 40), scores, config, classes=[0, 2])
    keep = torch.isin(every.classes, torch.tensor([0, 2]))
    assert 0 < keep.sum() < len(keep)
    torch.testing.assert_close(every.boxes[keep], chosen.boxes)
    torch.testing.assert_close(every.scores[keep], chosen.scores)


@pytest.mark.parametrize("bias_weight_decay", [True, False])
def test_bias_weight_decay_groups_for_the_localizer(bias_weight_decay: bool) -> None:
    module = untrained_localizer(bias_weight_decay=bias_weight_decay)
    optimizer = module.configure_optimizers()  # no scheduler: the optimizer alone
    trained = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    biases = {id(p) for n, p in trained if n.endswith(".bias")}
    if bias_weight_decay:
        [group] = optimizer.param_groups
        assert len(group["params"]) == len(trained) and group["weight_decay"] == 0.5
    else:
        weights, bias_group = optimizer.param_groups
        assert {id(p) for p in bias_group["params"]} == biases and bias_group["weight_decay"] == 0
        assert weights["weight_decay"] == 0.5 and not {id(p) for p in weights["params"]} & biases


def test_both_families_are_wsl_modules_with_the_proposal_flag(tmp_path: Path) -> None:
    for model, needs in (("localizer", False), ("wsddn", True)):
        cfg = compose_cfg("train", [f"model={model}", "model.net.weights=none"], tmp_path)
        module = hydra.utils.instantiate(cfg.model, class_names=["a", "b"])
        assert isinstance(module, WSLModule) and module.needs_proposals is needs


def test_metric_names_are_shared_in_metrics_json(generated_root: Path, tmp_path: Path) -> None:
    """The Localizer's test results carry the names every family uses (README, "Metric
    names"), devkit results files included."""
    overrides = localizer_overrides(generated_root, "train=false", "logger=none")
    metrics = train(compose_cfg("train", overrides, tmp_path))
    assert list(metrics) == [
        "cls_mAP",
        "det_mAP",
        *(f"det_{name}" for name in COCO_METRICS),
        "CorLoc",
        "metric2",
        "pointing",
    ]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert list(saved["per_class"]) == ["cls_AP", "det_AP", "CorLoc", "pointing"]
    assert (tmp_path / "class_ap.png").is_file()


def test_the_family_comes_from_the_config() -> None:
    robust = "wsl.models.localizer.LocalizerAlexNetRobust"
    module = WSLModule(["a", "b"], net={"_target_": robust, "weights": "none"})
    assert type(module.net) is LocalizerAlexNetRobust and module.net.pool.drop == 0.3
    assert module.hparams.net["_target_"] == robust  # the checkpoint's config rebuilds it
    wsddn = "wsl.models.wsddn.WSDDN"
    module = WSLModule(["a", "b", "c"], net={"_target_": wsddn, "weights": "none"})
    assert type(module.net) is WSDDN and module.net.fc8c.out_features == 3
    with pytest.raises(ValueError, match=r"model\.net must be a _target_ config"):
        WSLModule(["a"], net={"weights": "none"})
    with pytest.raises(TypeError, match="is not a wsl model family"):
        WSLModule(["a"], net={"_target_": "torch.nn.Identity"})


class ToyFamily(Family):
    """A new family in a few lines: two named losses, one box per image and class."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(num_classes))

    def step(self, batch: dict, detect: bool = False) -> StepOutput:
        scores = torch.sigmoid(self.logits).expand(len(batch["image"]), -1)
        bce = torch.nn.functional.binary_cross_entropy(scores, batch["labels"])
        return StepOutput({"bce": bce, "extra": torch.tensor(1.5)}, scores)

    def predict(self, batch: dict) -> Prediction:
        scores = torch.sigmoid(self.logits)
        box = torch.tensor([[0.0, 0.0, 9.0, 9.0]]).expand(len(scores), 4)
        found = Detections(box, scores, torch.arange(len(scores)))
        return Prediction([found] * len(batch["image"]), scores.expand(len(batch["image"]), -1))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_a_new_family_trains_and_detects_through_the_one_module() -> None:
    module = WSLModule(
        ["a", "b"], net={"_target_": f"{__name__}.ToyFamily"},
        optimizer={"_target_": "torch.optim.SGD", "lr": 1.0},
    )  # fmt: skip
    batch = {
        "image": torch.zeros(2, 3, 8, 8), "image_id": ["1", "2"],
        "labels": torch.tensor([[1.0, 0.0], [1.0, 0.0]]), "label_weights": torch.ones(2, 2),
    }  # fmt: skip
    loss = module.training_step(batch, 0)
    assert loss.item() == pytest.approx(math.log(2) + 1.5)  # the sum of the named losses
    optimizer = module.configure_optimizers()
    loss.backward()
    optimizer.step()
    assert module.net.logits[0] > 0 > module.net.logits[1]  # it learns from the labels
    [(boxes, scores, classes)] = module.detect({"image": torch.zeros(1, 3, 8, 8)})
    assert boxes.shape == (2, 4) and classes.tolist() == [0, 1] and scores[0] > scores[1]
    assert module.needs_proposals is False and module.training
