"""The Localizer learns from image labels on generated data, logs heatmaps and curves to
TensorBoard and visdom, and ``wsl.evaluate`` reproduces its test metrics from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from visdom import Visdom

from tests.support import compose_cfg
from wsl.data.generate import generate_voc
from wsl.evaluate import evaluate
from wsl.train import train

EPOCHS = 10


@pytest.fixture(scope="module")
def learning_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated set large enough to learn from in seconds."""
    root = tmp_path_factory.mktemp("learning")
    generate_voc(root, seed=1, num_trainval=120, num_test=48, proposals_per_image=20)
    return root


def overrides(root: Path, *extra: str) -> list[str]:
    return [
        "experiment=localizer_demo", f"data.root={root}", "data.num_workers=0",
        "data.batch_size=8",
        f"trainer.max_epochs={EPOCHS}", "trainer.enable_progress_bar=false",
        "callbacks.heatmaps.every_n_epochs=4", "callbacks.heatmaps.num_final_images=3",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(
    learning_root: Path, visdom_server: tuple[str, int], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The same model and images, untrained (test only) and after brief training."""
    untrained_dir = tmp_path_factory.mktemp("untrained")
    trained_dir = tmp_path_factory.mktemp("trained")
    untrained = train(
        compose_cfg(
            "train",
            overrides(learning_root, "train=false", "logger=none"),
            untrained_dir,
        )
    )
    server, port = visdom_server
    visdom = [f"logger.visdom.{k}={v}" for k, v in (("server", server), ("port", port),
                                                    ("env", "localizer_test"))]  # fmt: skip
    trained_cfg = compose_cfg("train", overrides(learning_root, *visdom), trained_dir)
    trained = train(trained_cfg)
    return {"untrained": untrained, "trained": trained, "dir": trained_dir}


def test_training_beats_the_untrained_model_clearly(runs: dict[str, Any]) -> None:
    untrained, trained = runs["untrained"], runs["trained"]
    assert trained["cls_mAP"] > untrained["cls_mAP"] + 0.25, (untrained, trained)
    assert trained["pointing"] > untrained["pointing"] + 0.25, (untrained, trained)
    assert trained["cls_mAP"] > 0.85


def test_run_directory_holds_metrics_checkpoints_and_pictures(runs: dict[str, Any]) -> None:
    run_dir: Path = runs["dir"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["metrics"]["cls_mAP"] == pytest.approx(runs["trained"]["cls_mAP"])
    assert set(saved["per_class"]) == {"cls_AP", "det_AP", "CorLoc", "pointing"}
    header = (run_dir / "per_class.csv").read_text().splitlines()[0]
    assert header == "class,cls_AP,det_AP,CorLoc,pointing"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # the test results of every family: the class-wise AP chart and the devkit results files
    assert (run_dir / "class_ap.png").is_file() and (run_dir / "pr_curves.json").is_file()
    assert (run_dir / "comp4_det_test_circle.txt").is_file()
    pictures = run_dir / "pictures"
    pictures = {p.relative_to(pictures).parts[:3] for p in pictures.rglob("*.png")}
    epochs = {parts[2] for parts in pictures if parts[1] == "train"}
    assert epochs == {"epoch_000", "epoch_003", "epoch_007", f"epoch_{EPOCHS - 1:03d}"}
    assert ("heatmaps", "final") in {parts[:2] for parts in pictures}


def test_tensorboard_holds_heatmaps_and_scalars(runs: dict[str, Any]) -> None:
    events = EventAccumulator(str(runs["dir"] / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    for scalar in ("train/loss_step", "train/loss_epoch", "val/loss", "train/cls_mAP",
                   "val/cls_mAP", "train/metric2", "val/metric2", "test/det_mAP",
                   "test/pointing"):  # fmt: skip
        assert scalar in tags["scalars"], scalar
    assert len(events.Scalars("val/cls_mAP")) == EPOCHS
    heatmaps = [t for t in tags["images"] if t.startswith("heatmaps/train/")]
    # Tags name the image id and the class (each image also alone); the steps are on the
    # slider: epochs 1, 4, 8 and 10 end at steps 15, 60, 120, 150 (120 images in batches of 8).
    assert heatmaps and all(len(t.split("/")) == 4 for t in heatmaps)
    assert {t.split("/")[-1] for t in heatmaps} >= {"image"}
    images = events.Images(heatmaps[0])
    assert [image.step for image in images] == [15, 60, 120, 150]
    assert images[0].width >= 384 and images[0].height >= 384


def test_visdom_has_the_curve_and_heatmap_windows(
    runs: dict[str, Any], visdom_server: tuple[str, int]
) -> None:
    server, port = visdom_server
    reader = Visdom(server=server, port=port, use_incoming_socket=False, raise_exceptions=True)
    windows = json.loads(reader.get_window_data(env="localizer_test"))
    for name in ("train/loss_step", "val/loss", "val/cls_mAP", "train/metric2", "hparams"):
        assert name in windows, name
    assert any(w.startswith("heatmaps/final/") for w in windows)
    assert len(windows["val/cls_mAP"]["content"]["data"][0]["x"]) == EPOCHS


def test_evaluate_reproduces_the_test_metrics_from_the_checkpoint(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    ckpt = runs["dir"] / "checkpoints" / "last.ckpt"
    cfg = compose_cfg("evaluate", [f"ckpt_path={ckpt}", "data.split=test", "logger=none"], tmp_path)
    results = evaluate(cfg)
    for name, value in runs["trained"].items():
        assert results["metrics"][name] == pytest.approx(value, abs=1e-6, nan_ok=True), name
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"][
        "cls_mAP"
    ] == pytest.approx(runs["trained"]["cls_mAP"])
