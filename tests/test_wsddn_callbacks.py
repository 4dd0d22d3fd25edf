"""WSDDN training callbacks in real ``pl.Trainer`` runs on generated data, with a fake detector
whose AP is known; TensorBoard files are read back with TensorBoard's reader, visdom windows
from a real server, pictures from disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn
from visdom import Visdom

from tests.support import compose_cfg, proposals_config
from wsl.callbacks.box_pictures import BoxPictures, box_picture
from wsl.callbacks.histograms import ParameterHistograms, resolve_layers
from wsl.callbacks.periodic_evaluation import (
    PeriodicDetectionEvaluation,
    fixed_subset,
    run_in_eval_mode,
)
from wsl.data.datamodule import VOCProposalsDataModule
from wsl.drawing import GT_COLOUR, PALETTE
from wsl.loggers.visdom_logger import VisdomLogger
from wsl.runtime.instantiate import instantiate_all

MISSED_CLASS = 1  # the "mistakes" detector never finds it: AP 0
FP_CLASS = 0  # ... and gives it one false positive per GT, scored above every true one: AP 0.5
LAYERS = ["net.features.0", "net.features.3", "net.fc7"]


class FakeDetector(pl.LightningModule):
    """A tiny net trained on image labels (conv1 frozen, as WSDDN's); ``detect`` returns boxes
    made from the GT, so its AP is known. Records what the callbacks should not disturb."""

    def __init__(self, num_classes: int, mistakes: bool = False) -> None:
        super().__init__()
        self.mistakes = mistakes
        self.net = nn.Module()
        self.net.features = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.ReLU()
        )
        self.net.fc7 = nn.Linear(4, num_classes)
        self.net.features[0].requires_grad_(False)
        self.before_step: dict[int, dict[str, tuple[Tensor, Tensor | None]]] = {}
        self.detect_modes: list[tuple[bool, bool]] = []  # (training, grad enabled)
        self.detected_ids: list[str] = []
        self.train_modes: list[bool] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        self.train_modes.append(self.training)
        pooled = self.net.features(batch["image"]).mean(dim=(2, 3))
        return F.binary_cross_entropy_with_logits(self.net.fc7(pooled), batch["labels"].float())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.before_step[self.global_step] = {
            name: (p.detach().clone(), None if p.grad is None else p.grad.clone())
            for name, p in self.named_parameters()
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.5)

    def detect(self, batch: dict[str, Any]) -> list[tuple[Tensor, Tensor, Tensor]]:
        self.detect_modes.append((self.training, torch.is_grad_enabled()))
        self.detected_ids += batch["image_id"]
        results = []
        for boxes, classes, difficult in zip(
            batch["original_gt_boxes"], batch["gt_classes"], batch["gt_difficult"], strict=True
        ):
            scores = torch.ones(len(boxes))
            if self.mistakes:
                keep = classes != MISSED_CLASS
                boxes, classes, scores = boxes[keep], classes[keep], scores[keep] / 2
                num_fp = int(((classes == FP_CLASS) & ~difficult[keep]).sum())
                boxes = torch.cat([boxes, torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(num_fp, 1)])
                scores = torch.cat([scores, torch.full((num_fp,), 0.9)])
                classes = torch.cat([classes, torch.full((num_fp,), FP_CLASS)])
            results.append((boxes, scores, classes))
        return results

    def detections_by_source(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return {"model": self.detect(batch)}  # as WSLModule: one source


def datamodule(root: Path) -> VOCProposalsDataModule:
    small = {"resize": "shortest_side", "scales": [48], "max_size": 64}
    return VOCProposalsDataModule(
        str(root),
        train_split="trainval",
        val_split="test",
        batch_size=4,
        train_transform=small,
        eval_transform=small,
        proposals=proposals_config(root),
    )


def fit(
    root: Path,
    out: Path,
    model: FakeDetector,
    callbacks: list[pl.Callback],
    max_steps: int,
    visdom: tuple[str, int],
    env: str,
) -> None:
    server, port = visdom
    loggers = [
        TensorBoardLogger(save_dir=str(out), name="tb", version=""),
        VisdomLogger(server=server, port=port, env=env, offline_ok=False),
    ]
    trainer = pl.Trainer(
        max_steps=max_steps,
        logger=loggers,
        callbacks=callbacks,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule(root))


def read_events(out: Path) -> EventAccumulator:
    events = EventAccumulator(str(out / "tb"), size_guidance={"histograms": 0, "images": 0})
    events.Reload()
    return events


def visdom_windows(visdom: tuple[str, int], env: str) -> dict[str, Any]:
    server, port = visdom
    reader = Visdom(server=server, port=port, use_incoming_socket=False, raise_exceptions=True)
    return json.loads(reader.get_window_data(env=env))


def picked_ids(root: Path, count: int | None) -> list[str]:
    """Ids of the images the callbacks pick from the test split (seed 0)."""
    ids = (root / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_text().split()
    return [ids[i] for i in fixed_subset(len(ids), count, 0)]


@pytest.fixture(scope="module")
def perfect_run(
    generated_root: Path, visdom_server: tuple[str, int], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """5 steps of a perfect detector: histograms and AP every 2 steps, box pictures."""
    out = tmp_path_factory.mktemp("perfect")
    model = FakeDetector(num_classes=4)
    callbacks = [
        ParameterHistograms(layers=LAYERS, every_n_steps=2),
        PeriodicDetectionEvaluation(every_n_steps=2, max_images=5),
        BoxPictures(num_images=2, output_dir=str(out / "pictures")),
    ]
    fit(generated_root, out, model, callbacks, 5, visdom_server, "wsddn_callbacks_perfect")
    windows = visdom_windows(visdom_server, "wsddn_callbacks_perfect")
    return {"out": out, "model": model, "events": read_events(out), "windows": windows}


@pytest.fixture(scope="module")
def mistakes_run(
    generated_root: Path, visdom_server: tuple[str, int], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """3 steps of the detector with known mistakes, AP on the whole test split at step 3."""
    out = tmp_path_factory.mktemp("mistakes")
    model = FakeDetector(num_classes=4, mistakes=True)
    callbacks = [PeriodicDetectionEvaluation(every_n_steps=3, max_images=None)]
    fit(generated_root, out, model, callbacks, 3, visdom_server, "wsddn_callbacks_mistakes")
    windows = visdom_windows(visdom_server, "wsddn_callbacks_mistakes")
    return {"out": out, "model": model, "events": read_events(out), "windows": windows}


def present_classes(root: Path, ids: list[str]) -> list[str]:
    """Classes with a non-difficult GT box in the images ``ids``, in label order."""
    dm = datamodule(root)
    dataset = dm.dataset("test")
    classes = dataset.index.classes
    present = set()
    for record in dataset.index.records:
        if record.image_id in ids:
            present |= {o.name for o in record.annotation.objects if not o.difficult}
    return [c for c in classes if c in present]


def test_histograms_of_weights_and_gradients_at_every_k_steps(
    perfect_run: dict[str, Any],
) -> None:
    events, model = perfect_run["events"], perfect_run["model"]
    histograms = set(events.Tags()["histograms"])
    params = [f"{layer}.{p}" for layer in LAYERS for p in ("weight", "bias")]
    assert histograms == {f"weights/{p}" for p in params} | {
        f"gradients/{p}" for p in params if not p.startswith("net.features.0.")
    }  # conv1 is frozen: no gradient
    for tag in histograms:
        kind, name = tag.split("/", 1)
        assert [e.step for e in events.Histograms(tag)] == [0, 2, 4], tag
        for event in events.Histograms(tag):
            weight, grad = model.before_step[event.step][name]
            values = (weight if kind == "weights" else grad).double()
            h = event.histogram_value
            assert h.num == values.numel(), tag
            assert h.sum == pytest.approx(float(values.sum()), rel=1e-5, abs=1e-6), tag
            assert (h.min, h.max) == pytest.approx((float(values.min()), float(values.max())))
    # the weights logged at step 4 are those before step 4's update, not the initial ones
    fc7_sums = [e.histogram_value.sum for e in events.Histograms("weights/net.fc7.weight")]
    assert fc7_sums[0] != pytest.approx(fc7_sums[2])


def test_histograms_in_visdom_are_bin_counts(perfect_run: dict[str, Any]) -> None:
    windows = perfect_run["windows"]
    assert "gradients/net.features.0.weight" not in windows
    assert "weights/net.features.0.weight" in windows
    [bars] = windows["gradients/net.fc7.weight"]["content"]["data"]
    assert len(bars["x"]) == 30 and len(set(bars["x"])) == 30
    assert sum(bars["y"]) == perfect_run["model"].net.fc7.weight.numel()


def test_perfect_detections_give_ap_one_every_k_steps_and_at_the_end(
    perfect_run: dict[str, Any], generated_root: Path
) -> None:
    events, model = perfect_run["events"], perfect_run["model"]
    scalars = events.Scalars("eval/det_mAP")
    assert [s.step for s in scalars] == [2, 4, 5]
    assert [s.value for s in scalars] == pytest.approx([1.0] * 3)
    present = present_classes(generated_root, picked_ids(generated_root, 5))
    per_class = {t for t in events.Tags()["scalars"] if t.startswith("eval/det_AP/")}
    assert per_class == {f"eval/det_AP/{c}" for c in present}
    assert [s.value for t in per_class for s in events.Scalars(t)] == pytest.approx(
        [1.0] * 3 * len(per_class)
    )
    # the same fixed 5 images at each of the 3 evaluations (and the 2 pictures twice)
    picked = picked_ids(generated_root, 5)
    assert model.detected_ids[2:-2] == picked * 3
    assert all(mode == (False, False) for mode in model.detect_modes)
    assert model.train_modes == [True] * 5  # training resumed in train mode


def test_class_ap_bar_chart_in_tensorboard_and_visdom(
    perfect_run: dict[str, Any], generated_root: Path
) -> None:
    charts = perfect_run["events"].Images("eval/det_AP")
    assert [c.step for c in charts] == [2, 4, 5]
    assert charts[0].width > 200 and charts[0].height > 200
    [bars] = perfect_run["windows"]["eval/det_AP"]["content"]["data"]
    present = present_classes(generated_root, picked_ids(generated_root, 5))
    assert bars["x"] == present
    assert bars["y"] == pytest.approx([1.0] * len(present))  # 11 x (1 / 11): 1 + 2e-16


def test_known_mistakes_give_the_hand_computed_ap(
    mistakes_run: dict[str, Any], generated_root: Path
) -> None:
    events, classes = mistakes_run["events"], datamodule(generated_root).class_names
    present = present_classes(generated_root, picked_ids(generated_root, None))
    assert classes[MISSED_CLASS] in present and classes[FP_CLASS] in present
    # n false positives above n true positives: precision k / (n + k) at recall k / n, so the
    # best precision at every recall level is n / 2n
    expected = {c: 1.0 for c in present} | {classes[FP_CLASS]: 0.5, classes[MISSED_CLASS]: 0.0}
    [scalar] = events.Scalars("eval/det_mAP")  # step 3 once: the end did not evaluate it again
    assert scalar.step == 3
    assert scalar.value == pytest.approx(np.mean(list(expected.values())))
    for name, ap in expected.items():
        assert events.Scalars(f"eval/det_AP/{name}")[0].value == pytest.approx(ap), name
    [bars] = mistakes_run["windows"]["eval/det_AP"]["content"]["data"]
    assert dict(zip(bars["x"], bars["y"], strict=True)) == pytest.approx(expected)
    assert len(mistakes_run["model"].detected_ids) == len(picked_ids(generated_root, None))


def test_box_pictures_at_train_start_and_end(
    perfect_run: dict[str, Any], generated_root: Path
) -> None:
    out, events = perfect_run["out"], perfect_run["events"]
    ids = picked_ids(generated_root, 2)
    # one tag per image, its steps on the slider; one file per image and step
    assert {t for t in events.Tags()["images"] if t.startswith("boxes/")} == {
        f"boxes/test/{i}" for i in ids
    }
    for image_id in ids:
        images = events.Images(f"boxes/test/{image_id}")
        assert [image.step for image in images] == [0, 5]
        for step, image in zip((0, 5), images, strict=True):
            assert min(image.width, image.height) >= 384
            png = out / "pictures" / f"boxes/test/step_{step}/{image_id}.png"
            with Image.open(png) as picture:
                pixels = np.asarray(picture.convert("RGB"))
            assert pixels.shape[:2] == (image.height, image.width)
    pictures = {p.relative_to(out / "pictures").as_posix() for p in out.rglob("*.png")}
    assert pictures == {f"boxes/test/step_{s}/{i}.png" for s in (0, 5) for i in ids}


def colour(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def test_box_picture_draws_gt_and_the_top_box_of_each_present_class() -> None:
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    detections = (
        torch.tensor([[22.0, 22, 35, 35], [0, 0, 10, 10], [2, 25, 15, 38]]),
        torch.tensor([0.7, 0.2, 0.99]),
        torch.tensor([1, 1, 2]),
    )
    gt = torch.tensor([[5.0, 5, 20, 20]])
    picture = box_picture(image, gt, torch.tensor([1]), detections, ["a", "b", "c"])
    pixels = picture.permute(1, 2, 0).numpy()  # enlarged 10x: pixel (y, x) -> (10y, 10x)
    assert (pixels[50, 120] == colour(GT_COLOUR)).all()  # GT top edge
    assert (pixels[280, 220] == colour(PALETTE[1])).all()  # the top class-1 box's left edge
    assert (pixels[50, 0] == 0).all()  # the weaker class-1 box is not drawn
    assert not (pixels == colour(PALETTE[2])).all(axis=-1).any()  # class 2 is not in the image


@pytest.mark.parametrize(
    ("layer", "message"),
    [("net.fc77", r"no layer 'net.fc77'.*'net.fc7'"), ("net.features.1", "has no parameters")],
)
def test_a_bad_layer_name_fails_at_fit_start(
    layer: str, message: str, generated_root: Path, tmp_path: Path
) -> None:
    model = FakeDetector(num_classes=4)
    with pytest.raises(ValueError, match=message):
        resolve_layers(model, [layer])
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        callbacks=[ParameterHistograms(layers=[layer])],
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    with pytest.raises(ValueError, match=message):
        trainer.fit(model, datamodule=datamodule(generated_root))
    assert model.train_modes == []  # before the first step


def test_callbacks_config_builds_the_three_callbacks_with_the_defaults(tmp_path: Path) -> None:
    cfg = compose_cfg(
        "train", ["callbacks=wsddn", "callbacks.histograms.every_n_steps=7"], tmp_path
    )
    built = {type(c): c for c in instantiate_all(cfg.callbacks)}
    assert {ModelCheckpoint, ParameterHistograms, PeriodicDetectionEvaluation, BoxPictures} <= set(
        built
    )
    assert built[ParameterHistograms].layers == LAYERS
    assert built[ParameterHistograms].every_n_steps == 7
    evaluation = built[PeriodicDetectionEvaluation]
    assert (evaluation.every_n_steps, evaluation.split, evaluation.max_images) == (500, None, 200)
    assert built[BoxPictures].output_dir == tmp_path / "pictures"


def test_run_in_eval_mode_is_the_modules_inference_context() -> None:
    class Strategy:
        def batch_to_device(self, batch: Any, device: torch.device) -> Any:
            return batch

    class Trainer:
        strategy = Strategy()

    model = FakeDetector(num_classes=4)
    model.train()

    def fails(batch: Any) -> None:
        assert (model.training, torch.is_grad_enabled()) == (False, False)
        raise RuntimeError(batch)

    with pytest.raises(RuntimeError, match="a batch"):
        run_in_eval_mode(Trainer(), model, "a batch", fails)  # type: ignore[arg-type]
    assert model.training  # restored, after an error too
