"""A short Localizer run's TensorBoard events, read back with TensorBoard's own reader: one image
tag per picture with its steps on the slider, and the HParams tab's run (config + test metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from tests.support import compose_cfg
from wsl.evaluation.results_files import read_results
from wsl.train import train

CLASSES = ("circle", "square", "triangle", "cross")  # the generated set's 4 classes


@pytest.fixture(scope="module")
def run(generated_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("tb_run")
    overrides = [
        "experiment=localizer_demo", f"data.root={generated_root}", "data.num_workers=0",
        "data.batch_size=8", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "logger=tensorboard", "callbacks.heatmaps.every_n_epochs=1",
        "callbacks.heatmaps.num_train_images=2", "callbacks.heatmaps.num_final_images=1",
    ]  # fmt: skip
    metrics = train(compose_cfg("train", overrides, out))
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    return {"out": out, "metrics": metrics, "events": events}


def test_one_image_tag_per_picture_with_every_step_on_the_slider(run: dict[str, Any]) -> None:
    events, out = run["events"], run["out"]
    tags = events.Tags()["images"]
    train_tags = [t for t in tags if t.startswith("heatmaps/train/")]
    final_tags = [t for t in tags if t.startswith("heatmaps/final/")]
    assert len(train_tags) + len(final_tags) == len(tags)  # nothing else, no epoch_/step_ tags
    # heatmaps/train/<image id>/<image | class>: 2 images, each alone and with its classes
    assert {len(t.split("/")) for t in tags} == {4}
    assert len({t.split("/")[2] for t in train_tags}) == 2
    assert {t.split("/")[3] for t in tags} <= {"image", *CLASSES}
    assert any(t.endswith("/image") for t in final_tags)
    steps = {tuple(image.step for image in events.Images(tag)) for tag in train_tags}
    assert steps == {(3, 6)}  # 24 training images in batches of 8: epochs end at steps 3 and 6
    # the files keep one picture per epoch
    for tag in train_tags:
        image_id, name = tag.split("/")[2:]
        files = sorted(
            (out / "pictures/heatmaps/train").glob(f"epoch_*/step_*/batch_*/{image_id}/{name}.png")
        )
        assert [f.relative_to(out / "pictures/heatmaps/train").parts[:2] for f in files] == [
            ("epoch_000", "step_3"), ("epoch_001", "step_6"),
        ]  # fmt: skip


def test_heatmaps_carry_a_title_and_colour_bar(run: dict[str, Any]) -> None:
    events = run["events"]
    overlay = next(t for t in events.Tags()["images"] if not t.endswith("/image"))
    plain = overlay.rsplit("/", 1)[0] + "/image"
    [heat, *_], [image, *_] = events.Images(overlay), events.Images(plain)
    # the picture is the enlarged image, 28 + 8 px taller (title, margin) and 72 px wider (bar)
    assert (heat.width, heat.height) == (image.width + 72, image.height + 36)


def test_hparams_hold_the_config_and_the_test_metrics(run: dict[str, Any]) -> None:
    events, metrics = run["events"], run["metrics"]
    content = events.PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info",
                            "_hparams_/session_end_info"}  # fmt: skip
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    names = {info.name.tag for info in experiment.metric_infos}
    assert names == {f"test/{name}" for name in metrics}
    # Lightning flattens the config with "/"
    assert start.hparams["model/optimizer/lr"].number_value == pytest.approx(0.01)
    assert start.hparams["data/batch_size"].number_value == 8
    assert not {key.split("/")[0] for key in start.hparams} & {"callbacks", "logger", "paths"}
    scalars = events.Tags()["scalars"]
    assert "hp_metric" not in scalars
    saved = read_results(run["out"])["metrics"]
    for name, value in saved.items():
        [scalar] = events.Scalars(f"test/{name}")  # logged once, by the test
        assert scalar.value == pytest.approx(value, abs=1e-6, nan_ok=True), name
